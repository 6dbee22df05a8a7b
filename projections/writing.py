"""Writing one batch of raw messages into a read-model file: one synchronous call, one transaction.

Shared by the live runner (projections.runner), which runs it on its aiosqlite
connection's own thread, and the bulk loader's child process (projections.bulk_load).
Why one call for the whole batch: through aiosqlite each statement group is a hop to the
connection's thread and back, and a batch of a fleet's mixed events alternates between
statements (a telemetry event is one upsert of the device, then one per metric), so a
batch of 500 cost hundreds of hops; measured under 5,000 events/s, those hops and the
event loop's share of them were a third of `up`'s CPU. Decoding happens here too, off the
event loop that also answers queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlcipher3

from core.errors import MahavishnuError
from core.store import RawMessage, StoredEvent
from projections.applying import MOVE_POSITION, batch_statements
from projections.projection import Projection


class AppliedTwice(MahavishnuError):
    """The batch's first sequence is not after the source's position: it was applied already."""


@dataclass(frozen=True)
class Written:
    applied: int
    scrubbed: bool  # an event of the batch erased data (Projection.scrubs): the WAL must be emptied


def write_batch(
    db: sqlcipher3.Connection, projection: Projection, source: str, messages: Sequence[RawMessage]
) -> Written:
    """Decode `messages`, apply them and move `source`'s position past them, all in one transaction.

    Raises AppliedTwice (nothing written) when the position is already at or past the
    first sequence, and sqlcipher3.Error when the file cannot be written (rolled back).
    """
    stored = [StoredEvent.of(*message) for message in messages]
    db.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in batch_statements(projection, stored):
            db.executemany(sql, rows)
        moved = db.execute(MOVE_POSITION, (stored[-1].seq, source, stored[0].seq))
        if moved.rowcount != 1:
            raise AppliedTwice(f"{source} sequences {stored[0].seq}..{stored[-1].seq} were applied already")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    scrubs = getattr(projection, "scrubs", None)
    scrubbed = scrubs is not None and any(s.event is not None and scrubs(s.event) for s in stored)
    return Written(len(stored), scrubbed)
