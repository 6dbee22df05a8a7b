"""`mahavishnu up`: create the mesh once, then run it in the foreground until Ctrl-C (mahavishnu.runtime.up)."""

from __future__ import annotations

import argparse

import msgspec

from core.config import Settings
from core.logs import configure_logging
from mahavishnu.runtime.home import Home


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="PATH",
        help="register a repository to index at start (repeatable)",
    )
    parser.add_argument(
        "--cluster",
        type=int,
        choices=(3, 5),
        metavar="N",
        help="run N (3 or 5) nats-server nodes on this machine with replicated streams ([server] cluster)",
    )
    parser.set_defaults(handler=_up)


async def _up(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.runtime.up import run

    if args.cluster:  # the flag wins over [server] cluster; the replaced section validates itself again
        server = msgspec.structs.replace(settings.server, cluster=args.cluster)
        settings = msgspec.structs.replace(settings, server=server)
    configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    return await run(home, settings, index=tuple(args.index))
