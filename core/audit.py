"""The audit trail: append-only (the AUDIT stream denies delete and purge) and hash-chained.

Every audit event carries `prev_hash`, the hash of the event before it in the stream, so
a changed, removed or reordered entry breaks the chain at that point (`verify_chain`).
The hash is SHA-256 of the event's canonical encoding (core.events.encode). Appends
are serialised through the stream's expected-last-sequence check: two writers racing
for the same place retry with the new last entry, so the chain stays one line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.errors import ConcurrencyConflict, StoreError
from core.events import AuditRecorded, EventDecodeError, decode, encode
from core.store import EventStore

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
    """Appends audit events to the chain."""

    def __init__(self, store: EventStore, *, attempts: int = 20) -> None:
        self.store = store
        self.attempts = attempts

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
        """Append one audited action after the current last entry; StoreError if it keeps losing the race."""
        for _ in range(self.attempts):
            last_seq, last_hash = await self._tail()
            event = AuditRecorded(
                actor=actor,
                category=category,
                action=action,
                target=target,
                outcome=outcome,
                details=details or {},
                prev_hash=last_hash,
            )
            try:
                await self.store.append_after(event, expected_last_seq=last_seq)
            except ConcurrencyConflict:
                continue  # another writer took this place in the chain: link to the new last entry
            return event
        raise StoreError(f"could not append to the audit trail after {self.attempts} tries: too many writers at once")

    async def _tail(self) -> tuple[int, str]:
        last = await self.store.last_sequence(STREAM)
        if last == 0:
            return 0, GENESIS
        data = await self.store.message_data(STREAM, last)
        try:
            event = decode(data)
        except EventDecodeError:
            return last, hashlib.sha256(data).hexdigest()  # an unreadable entry is chained by its bytes
        return last, audit_hash(event) if isinstance(event, AuditRecorded) else hashlib.sha256(data).hexdigest()
