"""The `mahavishnu` command line.

Every user mistake ends in one line, `error: <what is wrong and what to do>`, and a
non-zero exit; a traceback means a bug in Mahavishnu.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

import msgspec

from core import config
from core.config import Settings, home_dir
from core.errors import MahavishnuError
from core.logs import configure_logging
from mahavishnu.cli import agent as agent_cli

try:
    from certs import cli as ca_cli
    from mahavishnu.cli import audit as audit_cli
    from mahavishnu.cli import backup as backup_cli
    from mahavishnu.cli import cmd as command_cli
    from mahavishnu.cli import code as code_cli
    from mahavishnu.cli import device as device_cli
    from mahavishnu.cli import erase as erase_cli
    from mahavishnu.cli import projections as projection_cli
    from mahavishnu.cli import repo as repo_cli
    from mahavishnu.cli import shell as shell_cli
    from mahavishnu.cli import site as site_cli
    from mahavishnu.cli import slo as slo_cli

    CONTROL_PLANE = True
except ImportError:  # a device's install (the edge extra): only the agent's commands exist there
    CONTROL_PLANE = False

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mahavishnu", description="An event-sourced edge/IoT mesh on NATS JetStream.")
    parser.add_argument("--home", help="state directory (default: $MAHAVISHNU_HOME or ./.mahavishnu)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    up = commands.add_parser("up", help="create the mesh once, run it in the foreground until Ctrl-C")
    up.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="PATH",
        help="register a repository to index at start (repeatable)",
    )
    up.add_argument(
        "--cluster",
        type=int,
        choices=(3, 5),
        metavar="N",
        help="run N (3 or 5) nats-server nodes on this machine with replicated streams ([server] cluster)",
    )
    up.set_defaults(func=_up)

    init = commands.add_parser("init", help="create the state directory (CA, certificates, configuration) only")
    init.set_defaults(func=_init)

    status = commands.add_parser("status", help="check that the mesh answers")
    status.add_argument(
        "--wait-ready", type=_seconds, metavar="SECONDS", help="keep trying this long; exit non-zero on timeout"
    )
    status.set_defaults(func=_status)

    env = commands.add_parser("env", help="print the control identity's URL and TLS files")
    env.add_argument("--json", action="store_true", help="as one JSON object")
    env.set_defaults(func=_env)

    events = commands.add_parser("events", help="read the streams")
    events_commands = events.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    read = events_commands.add_parser("read", help="print stored events as JSON lines")
    read.add_argument("subject", help="subject filter, e.g. 'mesh.evt.>' or 'mesh.evt.device.dev-a.>'")
    read.add_argument("--from", dest="from_seq", type=_positive, default=1, help="first stream sequence")
    read.add_argument("--limit", type=_positive, default=0, help="stop after this many")
    read.set_defaults(func=_events_read)

    agent_cli.register(commands)  # type: ignore[arg-type]  # _Parser is an ArgumentParser
    if CONTROL_PLANE:
        ca_cli.register(commands)  # type: ignore[arg-type]
        device_cli.register(commands, _bind)  # type: ignore[arg-type]
        device_cli.register_operators(commands)  # type: ignore[arg-type]
        command_cli.register(commands, _bind)  # type: ignore[arg-type]
        projection_cli.register(commands, _bind)  # type: ignore[arg-type]
        audit_cli.register(commands, _bind)  # type: ignore[arg-type]
        backup_cli.register(commands, _bind)  # type: ignore[arg-type]
        code_cli.register(commands, _bind)  # type: ignore[arg-type]
        repo_cli.register(commands, _bind)  # type: ignore[arg-type]
        slo_cli.register(commands, _bind)  # type: ignore[arg-type]
        erase_cli.register(commands, _bind)  # type: ignore[arg-type]
        site_cli.register(commands)  # type: ignore[arg-type]
        shell_cli.register(commands, _bind)  # type: ignore[arg-type]
    return parser


def _bind(handler: Any) -> object:
    """Turn an async (home, settings, args) handler into a synchronous CLI `func`."""

    def run(args: argparse.Namespace, home: Path) -> int:
        from mahavishnu.runtime.home import Home

        return _run_async(handler(Home(home), _settings(home), args))

    return run


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds cannot be negative")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def settings_for(home: Path) -> Settings:
    """The settings of the mesh in `home` (its mahavishnu.toml, or MAHAVISHNU_CONFIG) with environment overrides."""
    return _settings(home)


def _settings(home: Path) -> Settings:
    return config.settings_for(home, os.environ)


def _up(args: argparse.Namespace, home: Path) -> int:
    from mahavishnu.runtime.home import Home
    from mahavishnu.runtime.up import run

    settings = _settings(home)
    if args.cluster:  # the flag wins over [server] cluster; the replaced section validates itself again
        server = msgspec.structs.replace(settings.server, cluster=args.cluster)
        settings = msgspec.structs.replace(settings, server=server)
    configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    return _run_async(run(Home(home), settings, index=tuple(args.index)))


def _init(args: argparse.Namespace, home: Path) -> int:
    from mahavishnu.runtime.home import Home, prepare

    prepare(Home(home), _settings(home))
    print(f"state directory ready: {home}")
    return 0


def _status(args: argparse.Namespace, home: Path) -> int:
    from mahavishnu.cli.clients import status
    from mahavishnu.runtime.home import Home

    return _run_async(status(Home(home), _settings(home), wait_ready=args.wait_ready, out=print))


def _env(args: argparse.Namespace, home: Path) -> int:
    from mahavishnu.cli.clients import env_document
    from mahavishnu.runtime.home import Home

    document = env_document(Home(home), _settings(home))
    if args.json:
        print(json.dumps(document))
    else:
        for key, value in document.items():
            print(f"MAHAVISHNU_{key.upper()}={value}")
    return 0


def _events_read(args: argparse.Namespace, home: Path) -> int:
    from mahavishnu.cli.clients import read_events
    from mahavishnu.runtime.home import Home

    settings = _settings(home)
    identity = Home(home).control_identity(settings)
    return _run_async(read_events(identity, settings, args.subject, args.from_seq, args.limit, out=print))


def _run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:  # uvloop is optional (not on Windows, not in the edge install)
        return asyncio.run(coroutine)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(level="warning", fmt="text")  # `up` reconfigures from the settings
    try:
        home = Path(args.home).resolve() if args.home else home_dir(os.environ)
        code: int = args.func(args, home)
        return code
    except MahavishnuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
