"""Runs one projection: an encrypted SQLite file kept up to date from its stream, exactly once in effect.

Each batch of events is applied in one transaction together with the new position, so
after a crash the file is either before or after the whole batch and consuming resumes
at position + 1. The position only moves forward; a replay of an applied sequence fails
loudly instead of applying twice. On open the file is validated (key, schema version,
position against the stream's first and last sequence) and rebuilt when it must be.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from core.errors import MahavishnuError
from core.events.base import utc_now
from core.store import EventStore, StoredEvent
from core.streams import stream_for
from projections.database import open_encrypted
from projections.projection import Park, Projection

log = logging.getLogger("mahavishnu.projections")

_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS projection_meta ("
    " name TEXT PRIMARY KEY, version INTEGER NOT NULL, position INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS parked ("
    " seq INTEGER PRIMARY KEY, subject TEXT NOT NULL, reason TEXT NOT NULL, data BLOB NOT NULL)",
)


class ProjectionError(MahavishnuError):
    """A projection could not be kept up to date."""


@dataclass(frozen=True)
class Parked:
    seq: int
    subject: str
    reason: str


class ProjectionRunner:
    """Keeps `projection`'s file in `directory` up to date from `store`; see the module docstring."""

    def __init__(
        self,
        projection: Projection,
        store: EventStore,
        *,
        directory: Path,
        key: str,
        batch: int = 500,
        path: Path | None = None,
    ):
        self.projection = projection
        self.store = store
        self.path = path or directory / f"{projection.name}.db"
        self.key = key
        self.batch = batch
        self.stream = stream_for(projection.subjects.rstrip(">*").rstrip(".") + ".", store.streams).name
        self.db: aiosqlite.Connection | None = None
        self.rebuilt_because = ""

    async def open(self) -> None:
        """Open and validate the file, rebuilding it from sequence 1 when it cannot be trusted."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = await open_encrypted(self.path, self.key)
        reason = await self._invalid()
        if reason:
            self.rebuilt_because = reason
            log.warning("rebuilding projection", extra={"projection": self.projection.name, "reason": reason})
            await self.db.close()
            _remove_database(self.path)
            self.db = await open_encrypted(self.path, self.key)
        await self._create()

    async def _invalid(self) -> str:
        assert self.db is not None
        tables = {row[0] for row in await self.db.execute_fetchall("SELECT name FROM sqlite_master")}
        if "projection_meta" not in tables:
            return "" if not tables else "the file has no projection bookkeeping"
        row = await self._meta()
        if row is None:
            return ""
        version, position = row
        if version != self.projection.version:
            return f"schema version {version} is not the projection's {self.projection.version}"
        last = await self.store.last_sequence(self.stream)
        if position > last:
            return f"position {position} is past the stream's last sequence {last} (the stream was reset)"
        return ""

    async def _create(self) -> None:
        assert self.db is not None
        for statement in (*_BOOKKEEPING, *self.projection.schema):
            await self.db.execute(statement)
        await self.db.execute(
            "INSERT OR IGNORE INTO projection_meta (name, version, position) VALUES (?, ?, 0)",
            (self.projection.name, self.projection.version),
        )

    async def _meta(self) -> tuple[int, int] | None:
        assert self.db is not None
        rows = list(await self.db.execute_fetchall("SELECT version, position FROM projection_meta"))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    async def position(self) -> int:
        meta = await self._meta()
        return meta[1] if meta else 0

    async def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply every event stored now after the position; returns the new position."""
        position = await self.position()
        pending: list[StoredEvent] = []
        async with contextlib.aclosing(self.store.read(self.projection.subjects, position + 1)) as events:
            async for stored in events:
                pending.append(stored)
                if len(pending) >= self.batch:
                    await self._apply(pending)
                    if progress:
                        progress(pending[-1].seq)
                    pending = []
        if pending:
            await self._apply(pending)
            if progress:
                progress(pending[-1].seq)
        return await self.position()

    async def _apply(self, batch: list[StoredEvent]) -> None:
        assert self.db is not None
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            for stored in batch:
                for sql, params in self._statements(stored):
                    await self.db.execute(sql, params)
            moved = await self.db.execute(
                "UPDATE projection_meta SET position = ? WHERE position < ?", (batch[-1].seq, batch[0].seq)
            )
            if moved.rowcount != 1:
                raise ProjectionError(
                    f"{self.projection.name}: sequences {batch[0].seq}..{batch[-1].seq} were applied already"
                )
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise

    def _statements(self, stored: StoredEvent) -> list[tuple[str, tuple[object, ...]]]:
        park = "INSERT OR REPLACE INTO parked (seq, subject, reason, data) VALUES (?, ?, ?, ?)"
        if stored.event is None:
            return [(park, (stored.seq, stored.subject, stored.error or "malformed", stored.data))]
        try:
            return self.projection.apply(stored.event, stored.seq)
        except Park as exc:
            return [(park, (stored.seq, stored.subject, exc.reason, stored.data))]

    async def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Build a new file from sequence 1 beside the live one, then swap it in; returns the new position.

        The live file keeps answering queries until the swap, which is one rename.
        `progress(position, last)` is called after every batch.
        """
        assert self.db is not None
        fresh = ProjectionRunner(
            self.projection,
            self.store,
            directory=self.path.parent,
            key=self.key,
            batch=self.batch,
            path=self.path.with_name(self.path.name + ".rebuild"),
        )
        _remove_database(fresh.path)
        await fresh.open()
        last = await self.store.last_sequence(self.stream)
        try:
            await fresh.catch_up(progress=(lambda position: progress(position, last)) if progress else None)
            await fresh.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
        finally:
            await fresh.close()
        await self.close()
        _remove_database(self.path, keep_main=True)
        os.replace(fresh.path, self.path)
        _remove_database(fresh.path)
        self.db = await open_encrypted(self.path, self.key)
        return await self.position()

    async def lag(self) -> tuple[int, float]:
        """How far behind the stream this projection is: in events, and in seconds since the oldest unapplied one."""
        position = await self.position()
        last = await self.store.last_sequence(self.stream)
        if last <= position:
            return 0, 0.0
        behind = [s async for s in _first(self.store.read(self.projection.subjects, position + 1))]
        age = (utc_now() - behind[0].event.occurred_at).total_seconds() if behind and behind[0].event else 0.0
        return last - position, max(0.0, age)

    async def parked(self) -> list[Parked]:
        assert self.db is not None
        rows = await self.db.execute_fetchall("SELECT seq, subject, reason FROM parked ORDER BY seq")
        return [Parked(int(r[0]), str(r[1]), str(r[2])) for r in rows]

    async def close(self) -> None:
        if self.db is not None:
            await self.db.close()
            self.db = None


def _remove_database(path: Path, *, keep_main: bool = False) -> None:
    for suffix in ("-wal", "-shm") if keep_main else ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _first(events: AsyncGenerator[StoredEvent, None]) -> AsyncGenerator[StoredEvent, None]:
    async with contextlib.aclosing(events) as stream:
        async for stored in stream:
            yield stored
            return
