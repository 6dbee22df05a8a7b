"""`mahavishnu up`: create the mesh once, then run it in the foreground until Ctrl-C (mahavishnu.runtime.up)."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--cluster",
        type=int,
        choices=(3, 5),
        metavar="N",
        help="run N (3 or 5) nats-server nodes on this machine with replicated streams ([server] cluster)",
    )
    where.add_argument(
        "--node",
        type=Path,
        metavar="BUNDLE",
        help="run this host's node of a cluster across hosts, from its bundle (`mahavishnu cluster init`)",
    )
    parser.set_defaults(handler=_up)


async def _up(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.runtime.up import run

    if args.cluster:  # the flag wins over [server] cluster; the replaced section validates itself again
        server = msgspec.structs.replace(settings.server, cluster=args.cluster)
        settings = msgspec.structs.replace(settings, server=server)
    node = None
    if args.node:  # refused in one line before anything is written when the bundle is not this host's
        from mahavishnu.runtime.bundle import check_node, install, read_node
        from mahavishnu.runtime.hostplan import node_settings

        bundle = args.node.resolve()
        node = read_node(bundle)
        check_node(bundle, node)
        settings = node_settings(settings, node)
        install(home, bundle, node)
    configure_logging(level=settings.logging.level, fmt=settings.logging.format)
    return await run(home, settings, index=tuple(args.index), node=node)
