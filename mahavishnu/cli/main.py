"""The `mahavishnu` command line: finds the verb, imports its module only, runs its handler.

Every user mistake ends in one line, `error: <what is wrong and what to do>`, and a
non-zero exit; a traceback means a bug in Mahavishnu. The verbs are listed in
mahavishnu.cli.verbs, with the handler shape they share.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Coroutine, Sequence
from typing import Any, NoReturn, cast

from mahavishnu.cli.running import run
from mahavishnu.cli.verbs import VERBS, Adder, Handler, Local, Verb, mesh_of

EXIT_USAGE = 2
# The control plane's own dependencies; a device's install (the edge extra) lacks them.
_CONTROL_PLANE_MARKERS = ("cryptography", "sqlcipher3")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}; see `{self.prog} --help`\n")


def control_plane_installed() -> bool:
    """Whether this install has the control plane's packages, or only a device's."""
    for name in _CONTROL_PLANE_MARKERS:
        try:
            if importlib.util.find_spec(name) is None:
                return False
        except ImportError:  # a finder that refuses the name: not installed for us either
            return False
    return True


def offered() -> dict[str, Verb]:
    """The verbs this install can run: all of them, or on a device only the agent's."""
    if control_plane_installed():
        return VERBS
    return {name: verb for name, verb in VERBS.items() if verb.on_device}


def verb_of(argv: Sequence[str]) -> str | None:
    """The verb named in `argv` (the first word that is not a top-level option), if any (pure)."""
    words = iter(argv)
    for word in words:
        if word == "--home":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def adder(verb: Verb) -> Adder:
    return cast(Adder, importlib.import_module(verb.module).add)


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser, with the arguments of the verb named in `argv` (the others: name and help only)."""
    parser = _Parser(prog="mahavishnu", description="An event-sourced edge/IoT mesh on NATS JetStream.")
    parser.add_argument("--home", help="state directory (default: $MAHAVISHNU_HOME or ./.mahavishnu)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    verbs, chosen = offered(), verb_of(argv)
    if chosen in verbs:  # only the verb that runs: the others' parsers would cost time and say nothing
        verbs = {chosen: verbs[chosen]}
    for name, verb in verbs.items():
        sub = commands.add_parser(name, help=verb.help, description=verb.help)
        if name == chosen:
            adder(verb)(sub)
    return parser


def action(args: argparse.Namespace) -> int | Coroutine[Any, Any, int]:
    """The chosen action's outcome: `local(args)`, or `handler(home, settings, args)` with the mesh's (verbs.py).

    A coroutine is run by `running.run`, on uvloop where it is installed.
    """
    local: Local | None = getattr(args, "local", None)
    if local is not None:
        result = local(args)
    else:
        handler: Handler = args.handler
        result = handler(*mesh_of(args), args)
    return cast("int | Coroutine[Any, Any, int]", result)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return run(lambda: action(args))


if __name__ == "__main__":
    sys.exit(main())
