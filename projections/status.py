"""How far each read model has got: its positions, its lag behind the streams, and its parked events.

The positions and parked events are in the read-model file; the lag needs the streams
as well (the first event not applied yet, and how many there are). The file is read
with a plain reader connection (projections.database.connect_reader) on a worker
thread: asking never disturbs the projection that writes it, and costs no aiosqlite
thread per call, which matters when a dashboard asks several times a second while the
mesh is busy. Used by `mahavishnu projections status` and by the `projections.status` query.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from core.events.base import utc_now
from core.store import EventStore, StoredEvent
from core.streams import stream_for_filter
from projections.database import connect_reader
from projections.projection import Projection


@dataclass(frozen=True)
class ReadModelStatus:
    """One read model's state; lag and parked are None while the file is not built yet."""

    name: str
    built: bool
    positions: dict[str, int]
    lag_events: int | None
    lag_seconds: float | None
    parked: int | None


def _bookkeeping(path: Path, key: str, sources: tuple[str, ...]) -> tuple[dict[str, int], int]:
    """The positions of `sources` and the parked count, read from the file (blocking)."""
    db = connect_reader(path, key)
    try:
        known = {str(s): int(p) for s, p in db.execute("SELECT source, position FROM positions").fetchall()}
        parked = int(db.execute("SELECT count(*) FROM parked").fetchone()[0])
    finally:
        db.close()
    return {source: known.get(source, 0) for source in sources}, parked


async def lag_of(store: EventStore, positions: dict[str, int]) -> tuple[int, float]:
    """Events on the sources after their positions, and the age in seconds of the oldest of them.

    One batched direct get of one message per source (core.store.direct) gives both: the
    first event not applied, and how many more of the source's subjects follow it. Nothing
    is set up on the server. StoreError when the streams cannot be asked.
    """
    events, seconds = 0, 0.0
    for source, position in positions.items():
        found, more = await store.read_after(source, position + 1, batch=1)
        if not found:
            continue
        events += len(found) + more
        first = StoredEvent.of(*found[0])
        if first.event is not None:
            seconds = max(seconds, (utc_now() - first.event.occurred_at).total_seconds())
    return events, seconds


async def read_model_status(projection: Projection, store: EventStore, folder: Path, key: str) -> ReadModelStatus:
    """The status of `projection`'s file in `folder`.

    Raises DatabaseKeyError when the key does not open the file, sqlcipher3.Error when
    it cannot be read now, StoreError when the streams cannot be asked.
    """
    path = folder / f"{projection.name}.db"
    if not path.exists():
        return ReadModelStatus(projection.name, False, {}, None, None, None)
    for source in projection.sources:
        stream_for_filter(source, store.streams)  # a source outside the streams fails here
    positions, parked = await asyncio.to_thread(_bookkeeping, path, key, projection.sources)
    events, seconds = await lag_of(store, positions)
    return ReadModelStatus(
        name=projection.name,
        built=True,
        positions=positions,
        lag_events=events,
        lag_seconds=round(seconds, 3),
        parked=parked,
    )
