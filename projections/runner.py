"""Runs one projection: an encrypted SQLite file kept up to date from its streams, exactly once in effect.

A projection reads one or more sources (subject filters, each inside one stream) and
keeps a position per source. Each batch of events is applied in one transaction
together with the source's new position, so after a crash the file is either before
or after the whole batch and consuming resumes at position + 1. A position only moves
forward: a replay of an applied sequence fails loudly instead of applying twice. On
open the file is validated (key, schema version, positions against the streams' last
sequences) and rebuilt when it must be.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import sqlcipher3

from core.errors import MahavishnuError
from core.events import Event
from core.store import EventStore, RawMessage, StoredEvent
from core.streams import stream_for_filter
from projections.applying import BOOKKEEPING
from projections.bulk_load import BulkLoader, LoadError
from projections.database import on_connection_thread, open_encrypted
from projections.projection import Projection, Remembers
from projections.writing import AppliedTwice, Written, write_batch

log = logging.getLogger("mahavishnu.projections")


class ProjectionError(MahavishnuError):
    """A projection could not be kept up to date."""


@dataclass(frozen=True)
class Parked:
    stream: str
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
        bulk_batch: int = 5000,
        path: Path | None = None,
    ):
        self.projection = projection
        self.store = store
        self.path = path or directory / f"{projection.name}.db"
        self.key = key
        self.batch = batch
        self.bulk_batch = bulk_batch
        self.streams = {source: stream_for_filter(source, store.streams).name for source in projection.sources}
        self.db: aiosqlite.Connection | None = None
        self.rebuilt_because = ""
        # The positions as last committed. Only this runner writes them (queries read the file,
        # a rebuild swaps in a new one and forgets these), so after one read they are known
        # without asking the file again: up asks after every round, hundreds of times a second
        # under load, and each read was a trip to the connection's thread.
        self._positions: dict[str, int] | None = None
        # Asked once: isinstance against a runtime-checkable Protocol walks its members, and
        # up asked it for every batch (2% of up's CPU under 200 commands a second).
        self._remembers = projection if isinstance(projection, Remembers) else None

    # --- opening ---------------------------------------------------------------

    async def open(self) -> None:
        """Open and validate the file, rebuilding it from sequence 1 when it cannot be trusted."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._positions = None
        self.db = await self._open()
        reason = await self._invalid()
        if reason:
            self.rebuilt_because = reason
            log.warning("rebuilding projection", extra={"projection": self.projection.name, "reason": reason})
            await self.db.close()
            _remove_database(self.path)
            self._positions = None  # the old file's, read by the checks
            self.db = await self._open()
        await self._create()
        await self._wake()

    async def _open(self) -> aiosqlite.Connection:
        db = await open_encrypted(self.path, self.key)
        if hasattr(self.projection, "scrubs"):  # it erases data: freed cells are zeroed, not left as free space
            await db.execute("PRAGMA secure_delete = ON")
        return db

    async def _invalid(self) -> str:
        tables = {row[0] for row in await self._fetch("SELECT name FROM sqlite_master")}
        if not tables:
            return ""
        if not {"projection_meta", "positions"} <= tables:
            return "the file has no projection bookkeeping"
        versions = [int(row[0]) for row in await self._fetch("SELECT version FROM projection_meta")]
        if versions and versions[0] != self.projection.version:
            return f"schema version {versions[0]} is not the projection's {self.projection.version}"
        for source, position in (await self.positions()).items():
            first, last = await self.store.bounds(self.streams[source])
            if position and position + 1 < first:
                return f"events {position + 1}..{first - 1} of {source} aged out of the stream before being applied"
            if position > last:
                return (
                    f"position {position} of {source} is past its stream's last sequence {last} (the stream was reset)"
                )
        return ""

    async def _create(self) -> None:
        assert self.db is not None
        for statement in (*BOOKKEEPING, *self.projection.schema):
            await self.db.execute(statement)
        await self.db.execute(
            "INSERT OR IGNORE INTO projection_meta (name, version) VALUES (?, ?)",
            (self.projection.name, self.projection.version),
        )
        for source in self.projection.sources:
            await self.db.execute("INSERT OR IGNORE INTO positions (source, position) VALUES (?, 0)", (source,))

    async def _fetch(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        assert self.db is not None
        return [tuple(row) for row in await self.db.execute_fetchall(sql, params)]

    # --- positions -----------------------------------------------------------

    async def positions(self) -> dict[str, int]:
        """The last applied sequence of each source."""
        if self._positions is None:
            rows = await self._fetch("SELECT source, position FROM positions")
            known = {str(source): int(position) for source, position in rows}
            self._positions = {source: known.get(source, 0) for source in self.projection.sources}
        return dict(self._positions)

    async def position(self) -> int:
        """The position of a single-source projection (the sum, for several sources)."""
        return sum((await self.positions()).values())

    # --- applying ------------------------------------------------------------

    async def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Apply every event stored now after each source's position; returns how many were applied.

        The messages come raw, `batch` at a time, by batched direct gets (core.store.direct:
        no consumer to set up per round), and each list is decoded and written in one call
        on the connection's thread (projections.writing).
        """
        applied = 0
        for source, position in (await self.positions()).items():
            more = 1
            while more:
                messages, more = await self.store.read_after(source, position + 1, batch=self.batch)
                if not messages:
                    break
                applied += await self._apply(source, messages)
                position = messages[-1].seq
                if progress:
                    progress(applied)
        return applied

    async def _apply(self, source: str, messages: list[RawMessage]) -> int:
        assert self.db is not None
        try:
            written = await self._write(source, messages)
        except AppliedTwice as exc:
            raise ProjectionError(f"{self.projection.name}: {exc}") from exc
        except sqlcipher3.Error as exc:
            raise ProjectionError(f"{self.projection.name}: the read model could not be written ({exc})") from exc
        if self._positions is not None:
            self._positions[source] = messages[-1].seq  # committed with the batch
        if written.scrubbed:
            await self._truncate_wal()
        return written.applied

    async def _write(self, source: str, messages: list[RawMessage]) -> Written:
        assert self.db is not None
        remembers = self._remembers
        if remembers is None:
            return await on_connection_thread(self.db, write_batch, self.projection, source, messages)
        try:
            await self._recall(remembers, messages)
            return await on_connection_thread(self.db, write_batch, self.projection, source, messages)
        except BaseException:
            remembers.forget()  # it may hold part of a batch that was rolled back
            raise

    async def _recall(self, projection: Remembers, messages: list[RawMessage]) -> None:
        """Hand `projection` the history before this batch of each key the batch names that it does not hold."""
        keys = projection.missing([message.subject for message in messages])
        await self._recall_keys(projection, keys, messages[0].seq)

    async def _wake(self) -> None:
        """Recall what a Remembers projection wants held from the start (Remembers.awake), up to the file's position."""
        if self._remembers is None:
            return
        keys = [str(row[0]) for row in await self._fetch(self._remembers.awake)]
        await self._recall_keys(self._remembers, keys, await self.position() + 1)

    async def _recall_keys(self, projection: Remembers, keys: list[str], before: int) -> None:
        """Hand `projection` each key's history before stream sequence `before`.

        The history is read here and decoded and folded on a thread (a campaign's is tens of
        thousands of events), so the event loop keeps answering meanwhile; nothing else
        touches the projection until this returns.
        """
        for key in keys:
            history: list[RawMessage] = []
            position, more = 1, 1
            while more and position < before:
                found, more = await self.store.read_after(projection.history(key), position, batch=self.batch)
                if not found:
                    break
                history += [message for message in found if message.seq < before]
                position = found[-1].seq + 1
            await asyncio.to_thread(_recall, projection, key, history)

    async def _truncate_wal(self) -> None:
        """Checkpoint and empty the WAL: older page images in it still hold what the batch erased.

        A passive checkpoint (SQLite's automatic one) leaves old frames in the file until they
        are overwritten; measured, an erased value outlived an UPDATE, a checkpoint and more
        writes there. A reader holding an old snapshot for longer than the busy timeout can
        keep it from finishing: then it is logged, and the next erasure or a rebuild removes them.
        """
        assert self.db is not None
        rows = await self.db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        busy = next(iter(rows), (0,))[0]
        if busy:
            log.warning(
                "erased data may remain in the read model's WAL until the next erasure or a rebuild",
                extra={"projection": self.projection.name},
            )

    # --- rebuilding and watching ---------------------------------------------

    async def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Build a new file from sequence 1 beside the live one, then swap it in; returns the events applied.

        The history is replayed raw and loaded by a child process (projections.bulk_load),
        so receiving and writing each get a core. The live file keeps answering queries
        until the swap, which is one rename. `progress(done, total)` follows every batch.
        """
        fresh = self.path.with_name(self.path.name + ".rebuild")
        _remove_database(fresh)
        total = sum([await self.store.last_sequence(stream) for stream in set(self.streams.values())])
        loader = await BulkLoader.start(
            self.projection, fresh, self.key, progress=(lambda done: progress(done, total)) if progress else None
        )
        try:
            for source in self.projection.sources:
                async with contextlib.aclosing(self.store.replay(source, 1, batch=self.bulk_batch)) as lists:
                    async for messages in lists:
                        await loader.load(source, messages)
            finished = await loader.finish()
        except BaseException as exc:
            await loader.abort()
            _remove_database(fresh)
            if isinstance(exc, LoadError):
                raise ProjectionError(f"{self.projection.name}: the rebuild failed ({exc})") from exc
            raise
        if progress:
            progress(finished.applied, total)  # the end, also when there was nothing to apply
        await self.close()
        _remove_database(self.path, keep_main=True)
        os.replace(fresh, self.path)
        _remove_database(fresh)
        self.db = await self._open()
        if self._remembers is not None:
            self._remembers.forget()  # the new file's state is recalled from the stream, as after a restart
            await self._wake()
        return finished.applied

    async def lag(self) -> tuple[int, float]:
        """How far behind the streams this projection is: events not applied, and the age of the oldest one."""
        from projections.status import lag_of  # status builds on the runner's file layout, not the other way

        return await lag_of(self.store, await self.positions())

    async def parked_count(self) -> int:
        return int((await self._fetch("SELECT count(*) FROM parked"))[0][0])

    async def parked(self) -> list[Parked]:
        rows = await self._fetch("SELECT stream, seq, subject, reason FROM parked ORDER BY stream, seq")
        return [Parked(str(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows]

    async def close(self) -> None:
        self._positions = None
        if self.db is not None:
            await self.db.close()
            self.db = None


def _recall(projection: Remembers, key: str, history: list[RawMessage]) -> None:
    """Decode `history` and hand it over; what does not decode is left out (the batch that applied it parked it)."""
    events: list[Event] = []
    for message in history:
        event = StoredEvent.of(*message).event
        if event is not None:
            events.append(event)
    projection.recall(key, events)


def _remove_database(path: Path, *, keep_main: bool = False) -> None:
    for suffix in ("-wal", "-shm") if keep_main else ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
