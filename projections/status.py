"""How far each read model has got: its positions, its lag behind the streams, and its parked events.

The positions and parked events are in the read-model file; the lag needs the streams
as well (their last sequences, and the time of the first event not applied yet). The
file is opened as a reader, so asking never disturbs the projection that writes it.
Used by `mahavishnu projections status` and by the `projections.status` query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.store import EventStore
from projections.database import open_encrypted
from projections.projection import Projection
from projections.runner import ProjectionRunner


@dataclass(frozen=True)
class ReadModelStatus:
    """One read model's state; lag and parked are None while the file is not built yet."""

    name: str
    built: bool
    positions: dict[str, int]
    lag_events: int | None
    lag_seconds: float | None
    parked: int | None


async def read_model_status(projection: Projection, store: EventStore, folder: Path, key: str) -> ReadModelStatus:
    """The status of `projection`'s file in `folder`.

    Raises DatabaseKeyError when the key does not open the file, sqlcipher3.Error when
    it cannot be read now, StoreError when the streams cannot be asked.
    """
    runner = ProjectionRunner(projection, store, directory=folder, key=key)
    if not runner.path.exists():
        return ReadModelStatus(projection.name, False, {}, None, None, None)
    runner.db = await open_encrypted(runner.path, key, reader=True)
    try:
        events, seconds = await runner.lag()
        return ReadModelStatus(
            name=projection.name,
            built=True,
            positions=await runner.positions(),
            lag_events=events,
            lag_seconds=round(seconds, 3),
            parked=await runner.parked_count(),
        )
    finally:
        await runner.close()
