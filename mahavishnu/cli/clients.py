"""The client-side commands: `status`, `env` and `events read`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable

from core.config import Settings
from core.errors import MahavishnuError
from core.store import EventStore, Identity, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.up import streams_of


def env_document(home: Home, settings: Settings) -> dict[str, str]:
    """The control identity, as `mahavishnu env --json` prints it (pure)."""
    identity = home.control_identity(settings)
    return {
        "url": identity.url,
        "ca": str(identity.ca),
        "cert": str(identity.cert),
        "key": str(identity.key),
        "home": str(home.root),
    }


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


async def read_events(
    identity: Identity, settings: Settings, subject: str, from_seq: int, limit: int, out: Callable[[str], None]
) -> int:
    """Print stored events as JSON lines: {"seq", "subject", "event"} or {"seq", "subject", "error"}."""
    nc = await connect(identity, name="mahavishnu-events", reconnect=False)
    try:
        store = EventStore(nc, streams_of(settings))
        shown = 0
        async with contextlib.aclosing(store.read(subject, from_seq)) as stream:
            async for stored in stream:
                body = stored.data.decode("utf-8", "replace")
                document = {"seq": stored.seq, "subject": stored.subject}
                if stored.event is not None:
                    line = json.dumps(document)[:-1] + f', "event": {body}}}'
                else:
                    line = json.dumps({**document, "error": stored.error})
                out(line)
                shown += 1
                if limit and shown >= limit:
                    break
        return 0
    finally:
        await nc.close()
