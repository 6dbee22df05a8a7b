"""What applying a batch of events means, shared by the live runner and the bulk loader (pure).

Each event becomes the projection's statements, or one `parked` row when it does not
decode or the projection refuses it. Runs of the same statement are grouped so that a
batch costs one `executemany` per statement rather than one call per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.store import StoredEvent
from projections.projection import Park, Projection, Statement

BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS projection_meta (name TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS positions (source TEXT PRIMARY KEY, position INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS parked ("
    " stream TEXT NOT NULL, seq INTEGER NOT NULL, subject TEXT NOT NULL, reason TEXT NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY (stream, seq))",
)
PARK = "INSERT OR REPLACE INTO parked (stream, seq, subject, reason, data) VALUES (?, ?, ?, ?, ?)"
# Moves a source's position past a batch, only if it is before the batch: a replay of an
# applied batch changes no row, and the writer treats that as the error it is.
MOVE_POSITION = "UPDATE positions SET position = ? WHERE source = ? AND position < ?"


def statements_for(projection: Projection, stored: StoredEvent) -> list[Statement]:
    """The statements that apply one stored event, or park it with the reason."""
    if stored.event is None:
        return [(PARK, (stored.stream, stored.seq, stored.subject, stored.error or "malformed", stored.data))]
    try:
        return projection.apply(stored.event, stored.seq)
    except Park as exc:
        return [(PARK, (stored.stream, stored.seq, stored.subject, exc.reason, stored.data))]


def grouped(statements: Iterable[Statement]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """Consecutive statements with the same SQL, as (sql, [params...]); the order is kept."""
    groups: list[tuple[str, list[tuple[Any, ...]]]] = []
    for sql, params in statements:
        if groups and groups[-1][0] == sql:
            groups[-1][1].append(params)
        else:
            groups.append((sql, [params]))
    return groups


def batch_statements(projection: Projection, batch: Iterable[StoredEvent]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    return grouped(statement for stored in batch for statement in statements_for(projection, stored))


def is_index(statement: str) -> bool:
    """A CREATE INDEX: a bulk load builds these after the rows, which is several times faster."""
    return statement.lstrip().upper().startswith(("CREATE INDEX", "CREATE UNIQUE INDEX"))
