"""`mahavishnu projections status|parked|rebuild` and `mahavishnu db rekey`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from core.config import Settings
from core.store import EventStore, connect
from mahavishnu.cli.mesh import control_store
from mahavishnu.control.requests import request_rebuild
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.offline import control_connection
from mahavishnu.runtime.streams import streams_of
from projections.catalog import CATALOG, build
from projections.checksum import content_checksum
from projections.database import database_key, open_encrypted
from projections.runner import ProjectionRunner
from projections.status import read_model_status


def add(projections: argparse.ArgumentParser) -> None:
    actions = projections.add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    actions.add_parser("status", help="position, lag (events and seconds) and parked count of each").set_defaults(
        handler=_status
    )
    parked = actions.add_parser("parked", help="the events a read model could not apply, with the reason")
    parked.add_argument("name", choices=sorted(CATALOG))
    parked.set_defaults(handler=_parked)
    rebuild = actions.add_parser("rebuild", help="build a read model again from sequence 1 and swap it in")
    rebuild.add_argument("name", choices=sorted(CATALOG))
    rebuild.set_defaults(handler=_rebuild)
    actions.add_parser(
        "checksum", help="a content checksum of each read model (equal rows, equal checksum)"
    ).set_defaults(handler=_checksum)


async def _runner(home: Home, settings: Settings, name: str) -> ProjectionRunner:
    home.check_ready()
    nc = await connect(home.control_identity(settings), name="mahavishnu-projections", reconnect=False)
    store = EventStore(nc, streams_of(settings))
    return ProjectionRunner(
        CATALOG[name](), store, directory=home.readmodels_dir, key=database_key(home.root, os.environ)
    )


async def _status(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "projections") as store:
        key = database_key(home.root, os.environ)
        for name in sorted(CATALOG):
            status = await read_model_status(CATALOG[name](), store, home.readmodels_dir, key)
            if not status.built:
                print(f"{name}: not built yet (`mahavishnu up` builds it)")
                continue
            positions = ", ".join(f"{source} at {seq}" for source, seq in status.positions.items())
            print(
                f"{name}: {positions}; lag {status.lag_events} events / {status.lag_seconds or 0:.1f} s; "
                f"parked {status.parked}"
            )
    return 0


async def _checksum(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    key = database_key(home.root, os.environ)
    for name in sorted(CATALOG):
        path = home.readmodels_dir / f"{name}.db"
        print(f"{name}: {await content_checksum(path, key) if path.exists() else 'not built yet'}")
    return 0


async def _parked(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    runner = await _runner(home, settings, args.name)
    try:
        runner.db = await open_encrypted(runner.path, runner.key, reader=True)
        for entry in await runner.parked():
            print(f"{entry.stream} seq {entry.seq}  {entry.subject}  {entry.reason}")
    finally:
        await runner.close()
        await runner.store.nc.close()
    return 0


async def _rebuild(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    home.check_ready()
    async with control_connection(home, settings, "mahavishnu-projections") as connected:
        if connected.up_running:  # the running up owns the read models: it rebuilds, queries keep answering
            applied = await request_rebuild(connected.nc, args.name, _bar(args.name))
            print(f"\n{args.name} rebuilt by the running mesh from {applied} events")
            return 0
        store = EventStore(connected.nc, streams_of(settings))
        key = database_key(home.root, os.environ)
        runner = ProjectionRunner(build(args.name, home.data_keys), store, directory=home.readmodels_dir, key=key)
        try:
            await runner.open()
            applied = await runner.rebuild(progress=_bar(args.name))
        finally:
            await runner.close()
    print(f"\n{args.name} rebuilt from {applied} events")
    return 0


def _bar(name: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        share = min(1.0, done / total) if total else 1.0
        filled = int(share * 30)
        sys.stderr.write(f"\rrebuilding {name} [{'#' * filled}{'.' * (30 - filled)}] {done} events {share:.0%}")
        sys.stderr.flush()

    return show
