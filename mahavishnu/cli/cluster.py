"""`mahavishnu cluster init --hosts h1,h2,h3`: one bundle per host for a cluster across hosts (runtime.bundle)."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.config import Settings
from mahavishnu.runtime.home import Home


def add(cluster: argparse.ArgumentParser) -> None:
    actions = cluster.add_subparsers(dest="cluster_command", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init", help="write one node bundle per host (certificates, routes, settings, credentials); control host"
    )
    init.add_argument(
        "--hosts",
        required=True,
        metavar="H1,H2,H3",
        help="3 or 5 host names or addresses, this (control) host first: it keeps the CA and runs the services",
    )
    init.add_argument("--out", type=Path, default=Path("cluster-bundles"), help="where to write them (a folder each)")
    init.set_defaults(handler=_init)


def _init(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.runtime.bundle import write_bundles
    from mahavishnu.runtime.hostplan import parse_hosts

    hosts = parse_hosts(args.hosts)
    folders = write_bundles(home, settings, hosts, args.out.resolve())
    for host, folder in zip(hosts, folders, strict=True):
        print(f"{host}: {folder}")
    print(
        "Each bundle holds the control credentials and the JetStream key: copy it to its host only, over a "
        "private channel. On each host: `mahavishnu up --node BUNDLE` (the first with this state directory)."
    )
    return 0
