"""The audit trail: append-only (the AUDIT stream denies delete and purge) and hash-chained.

Every audit event carries `prev_hash`, the hash of the event before it in the stream, so
a changed, removed or reordered entry breaks the chain at that point (`verify_chain`).
The hash is SHA-256 of the event's canonical encoding (core.events.encode). Appends
are serialised through the stream's expected last sequence and last message id: two
writers racing for the same place retry with the new last entry, so the chain stays
one line. Each trail appends the records made meanwhile together, pipelined as one
chained append (AuditTrail, core.store.chained).

A process records through one trail, its store's (`store.audit`, made once per
EventStore): that is what lets the records of the query service, the control services
and the gateways share one group commit and one remembered end of the chain. Another
AuditTrail on the same store is a separate writer, like another process: correct, but
it batches alone and costs the first a refused append each time it gets in between.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from core.errors import AppendFailed, ConcurrencyConflict, StoreError
from core.events import AuditRecorded, EventDecodeError, decode, encode
from core.store import EventStore
from core.store.bulk import HEADER_ROOM

GENESIS = "0" * 64
STREAM = "AUDIT"


def audit_hash(event: AuditRecorded) -> str:
    return hashlib.sha256(encode(event)).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    problem: str


def verify_chain(entries: Iterable[tuple[int, AuditRecorded | None]]) -> list[ChainBreak]:
    """Every place where the chain does not hold (pure): a changed, removed, reordered or unreadable entry."""
    breaks: list[ChainBreak] = []
    previous = GENESIS
    expected_seq: int | None = None
    for seq, event in entries:
        if expected_seq is not None and seq != expected_seq:
            breaks.append(ChainBreak(seq, f"entries {expected_seq}..{seq - 1} are missing"))
        expected_seq = seq + 1
        if event is None:
            breaks.append(ChainBreak(seq, "the entry is unreadable"))
            previous = ""
            continue
        if event.prev_hash != previous:
            breaks.append(ChainBreak(seq, "the entry before it was changed, removed or reordered"))
        previous = audit_hash(event)
    return breaks


class AuditTrail:
    """Appends audit events to the chain, the records of many callers at a time (group commit).

    Records made while an append is in flight are queued and go out together in the next
    one: a chained append after the entry the trail believes is last, each record stored
    only right after the one before it (the server checks the expected last sequence and
    message id), so the chain stays one line however many writers race, in this process
    or others. A caller returns once its own record is stored, never before: the server
    acknowledged it.

    The last entry is remembered after each append, so while this trail is the only writer
    a batch costs one round-trip; when another writer got in between, the server refuses
    the rest of the batch from that place on, and the trail reads the new last entry and
    links the remaining records to it.
    """

    def __init__(self, store: EventStore, *, attempts: int = 20, max_batch: int = 256) -> None:
        self.store = store
        self.attempts = attempts
        self.max_batch = max(1, max_batch)
        self._queue: list[tuple[AuditRecorded, asyncio.Future[AuditRecorded]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._tail: _Tail | None = None

    async def record(
        self,
        *,
        actor: str,
        category: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        details: dict[str, Any] | None = None,
    ) -> AuditRecorded:
        """Append one audited action to the chain and return it once stored.

        StoreError if it keeps losing the race for the end of the chain, or the error of the
        append that carried it (StoreUnavailable, AppendFailed): then it may not be stored.
        What would spoil a whole batch fails here, for this caller alone: ValueError when the
        actor or category cannot be a subject token, AppendFailed when the entry is too large.
        """
        event = AuditRecorded(
            actor=actor, category=category, action=action, target=target, outcome=outcome, details=details or {}
        )
        event.subject()
        size = len(encode(event)) + len(GENESIS)  # prev_hash is filled in when the entry is linked
        limit = (self.store.nc.max_payload or 1024 * 1024) - HEADER_ROOM
        if size > limit:
            raise AppendFailed(f"the audit entry {category}/{action} is {size} bytes, over the limit of {limit}")
        stored: asyncio.Future[AuditRecorded] = asyncio.get_running_loop().create_future()
        self._queue.append((event, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name="audit-trail")
        return await stored

    async def _write_queued(self) -> None:
        """Append what is queued, up to max_batch at a time, until the queue is empty; settle each caller's future."""
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                await self._append(batch)
            except BaseException:  # cancelled (the loop is closing): nobody will write these
                for _, stored in batch + self._queue:
                    stored.cancel()
                self._queue = []
                raise

    async def _append(self, batch: list[tuple[AuditRecorded, asyncio.Future[AuditRecorded]]]) -> None:
        """Chain `batch` after the last entry, re-linking what another writer's entries displaced."""
        for _ in range(self.attempts):
            try:
                tail = self._tail if self._tail is not None else await self._read_tail()
                linked = link([event for event, _ in batch], tail.hash)
                stored, refused = await self.store.append_chain(linked, after_seq=tail.seq)
            except Exception as exc:  # unanswered: stored or not is unknown; read the end of the chain next time
                self._tail = None
                _settle(batch, exc)  # each caller gets the store's error (say, StoreUnavailable), not a cancel
                return
            if stored:
                last = linked[len(stored) - 1]
                self._tail = _Tail(stored[-1].seq, audit_hash(last))
                for (_, future), event in zip(batch, linked, strict=False):
                    if not future.done():  # a caller that gave up waiting: its record is stored all the same
                        future.set_result(event)
                batch = batch[len(stored) :]
            if refused is None:
                return
            self._tail = None  # another writer took the next place in the chain: link to its last entry
            if not isinstance(refused, ConcurrencyConflict):
                _settle(batch[:1], refused)  # the entry itself was refused; the ones after it go on
                batch = batch[1:]
            if not batch:
                return
        _settle(batch, StoreError(f"could not append to the audit trail after {self.attempts} tries: too many writers"))

    async def _read_tail(self) -> _Tail:
        last = await self.store.last_sequence(STREAM)
        if last == 0:
            return _Tail(0, GENESIS)
        data = await self.store.message_data(STREAM, last)
        try:
            event = decode(data)
        except EventDecodeError:
            event = None
        if not isinstance(event, AuditRecorded):  # an unreadable entry is chained by its bytes
            return _Tail(last, hashlib.sha256(data).hexdigest())
        return _Tail(last, audit_hash(event))


@dataclass(frozen=True)
class _Tail:
    """The last entry of the chain as far as this trail knows: where the next one goes and what it names."""

    seq: int
    hash: str


def _settle(batch: list[tuple[AuditRecorded, asyncio.Future[AuditRecorded]]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)


def link(events: list[AuditRecorded], prev_hash: str) -> list[AuditRecorded]:
    """The events chained one after the other behind the entry whose hash is `prev_hash` (pure)."""
    linked: list[AuditRecorded] = []
    for event in events:
        linked.append(msgspec.structs.replace(event, prev_hash=prev_hash))
        prev_hash = audit_hash(linked[-1])
    return linked
