"""`up`'s refresher: re-sign the online roles' files before they expire, checked every REFRESH_EVERY_S.

The timestamp lives a day and is re-signed once less than half of it is left, so an hourly
check leaves a dozen tries before a device would see it expire (a freeze to the device).
A failed round (the mesh unreachable for a moment, a lost online key) is logged and tried
again at the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.errors import MahavishnuError
from core.store import EventStore
from mahavishnu.runtime.home import Home
from mahavishnu.updates.trust import control

REFRESH_EVERY_S = 3600.0
log = logging.getLogger(__name__)


async def keep_fresh(home: Home, store: EventStore, stop: asyncio.Event, *, every: float = REFRESH_EVERY_S) -> None:
    """Refresh now and every `every` seconds until `stop` is set."""
    while not stop.is_set():
        await refresh_once(home, store)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def refresh_once(home: Home, store: EventStore) -> None:
    """One round of control.refresh: what is due re-signed, what the bucket lacks published; errors logged."""
    try:
        outcome = await control.refresh(home, store.js, store, actor="control")
    except MahavishnuError as exc:
        log.warning("update metadata not refreshed", extra={"reason": str(exc)})
        return
    for event in outcome.published:
        log.info("update metadata published", extra={"role": event.role, "version": event.version})
