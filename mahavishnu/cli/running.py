"""Running what the command line chose: logging set, a coroutine on uvloop where installed, errors as one line.

main.py runs every verb's action through `run` once argparse has chosen it. A device's
`mahavishnu agent run --config FILE` is the one long-lived process of the command line,
and it comes here without argparse (`agent_config_only`, asked by the entry point in
__init__.py): argparse and the gettext it loads were 0.4 MB of an idle agent's memory
(bench/agent_footprint.py), for reading four words once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

AGENT_RUN = ("agent", "run", "--config")


def agent_config_only(argv: Sequence[str]) -> str | None:
    """FILE when `argv` is exactly `agent run --config FILE` (pure); None for anything else, which argparse reads."""
    if len(argv) == len(AGENT_RUN) + 1 and tuple(argv[:-1]) == AGENT_RUN and not argv[-1].startswith("-"):
        return argv[-1]
    return None


def run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows, not in the edge install)
        import asyncio

        return asyncio.run(coroutine)
    # Outside the try: an ImportError raised by the handler itself is its own, not a missing uvloop.
    return uvloop.run(coroutine)


def run(action: Callable[[], int | Coroutine[Any, Any, int]]) -> int:
    """Run `action` (a coroutine it returns on uvloop where installed); its exit code, 1 after a MahavishnuError."""
    # Imported once the verb is known: `--help` and usage errors load none of them.
    from core.errors import MahavishnuError
    from core.logs import configure_logging

    configure_logging(level="warning", fmt="text")  # `up` and the agent reconfigure from their own settings
    try:
        result = action()
        if isinstance(result, Coroutine):
            return run_async(result)
        return result
    except MahavishnuError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
