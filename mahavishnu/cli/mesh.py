"""The running mesh as a verb talks to it: the control identity's event store, closed when the verb is done."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from core.config import Settings
from core.store import EventStore, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.streams import streams_of


@contextlib.asynccontextmanager
async def control_store(home: Home, settings: Settings, verb: str) -> AsyncIterator[EventStore]:
    """An EventStore on the mesh as the control identity, its connection named for `verb`.

    HomeError (what to do) when the state directory was never prepared; StoreUnavailable
    when no server answers. One attempt, no reconnect: a command line fails fast.
    """
    home.check_ready()
    nc = await connect(home.control_identity(settings), name=f"mahavishnu-{verb}", reconnect=False)
    try:
        yield EventStore(nc, streams_of(settings))
    finally:
        await nc.close()
