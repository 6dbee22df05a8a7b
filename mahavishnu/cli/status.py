"""`mahavishnu status [--wait-ready S]`: does the mesh answer? Exits 0 once it does."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable

from core.config import Settings
from core.errors import MahavishnuError
from core.store import EventStore, connect
from mahavishnu.cli.arguments import seconds
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.streams import streams_of


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait-ready", type=seconds, metavar="SECONDS", help="keep trying this long; exit non-zero on timeout"
    )
    parser.set_defaults(handler=_status)


async def _status(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    return await status(home, settings, wait_ready=args.wait_ready, out=print)


async def probe(home: Home, settings: Settings) -> dict[str, int]:
    """Connect as the control identity and read every stream's last sequence; MahavishnuError if not ready."""
    home.check_ready()
    nc = await connect(home.control_identity(settings), name="mahavishnu-status", reconnect=False, connect_timeout=2)
    try:
        store = EventStore(nc, streams_of(settings), timeout=2)
        return {spec.name: await store.last_sequence(spec.name) for spec in store.streams}
    finally:
        await nc.close()


async def status(home: Home, settings: Settings, *, wait_ready: float | None, out: Callable[[str], None]) -> int:
    """Print the mesh's state; with `wait_ready`, keep trying that many seconds before failing."""
    deadline = time.monotonic() + (wait_ready or 0)
    while True:
        try:
            streams = await probe(home, settings)
            break
        except MahavishnuError as exc:
            if time.monotonic() >= deadline:
                waited = f" within {wait_ready:g} s" if wait_ready else ""
                raise MahavishnuError(f"the mesh is not ready{waited}: {exc}") from exc
        await asyncio.sleep(0.2)  # poll interval while waiting for the mesh, bounded by the deadline
    summary = ", ".join(f"{name} last seq {seq}" for name, seq in streams.items())
    out(f"ready: {home.control_identity(settings).url} ({summary})")
    return 0
