"""The audit trail's hash chain: intact when appended concurrently, and every kind of tampering is found."""

from __future__ import annotations

import asyncio
import json

import msgspec

from core.audit import GENESIS, AuditTrail, audit_hash, verify_chain
from core.events import AuditRecorded, decode
from core.store import EventStore


def chain(n: int) -> list[tuple[int, AuditRecorded | None]]:
    entries: list[tuple[int, AuditRecorded | None]] = []
    previous = GENESIS
    for seq in range(1, n + 1):
        event = AuditRecorded(actor=f"a{seq}", category="test", action="act", prev_hash=previous)
        entries.append((seq, event))
        previous = audit_hash(event)
    return entries


def test_an_intact_chain_verifies() -> None:
    assert verify_chain(chain(5)) == []


def test_a_changed_entry_breaks_the_chain_after_it() -> None:
    entries = chain(5)
    seq, event = entries[1]
    assert event is not None
    entries[1] = (seq, msgspec.structs.replace(event, actor="someone-else"))
    assert [b.seq for b in verify_chain(entries)] == [3]


def test_a_removed_entry_is_found() -> None:
    entries = chain(5)
    del entries[2]
    problems = verify_chain(entries)
    assert [b.seq for b in problems][:1] == [4]
    assert any("missing" in b.problem for b in problems)


def test_reordered_entries_are_found() -> None:
    entries = chain(5)
    entries[1], entries[2] = (2, entries[2][1]), (3, entries[1][1])
    assert verify_chain(entries) != []


async def test_concurrent_writers_keep_one_chain(store: EventStore) -> None:
    trail = AuditTrail(store)
    await asyncio.gather(*(trail.record(actor=f"w{i}", category="test", action="race") for i in range(12)))
    stored = [(s.seq, s.event) async for s in store.read("mesh.audit.>")]
    entries = [(seq, e if isinstance(e, AuditRecorded) else None) for seq, e in stored]
    assert verify_chain(entries) == []
    assert sum(1 for _, e in entries if e is not None and e.action == "race") == 12


async def test_a_tampered_export_is_detected(store: EventStore) -> None:
    trail = AuditTrail(store)
    for i in range(4):
        await trail.record(actor="control", category="test", action=f"step-{i}")
    lines = [json.dumps({"seq": s.seq, "event": json.loads(s.data)}) async for s in store.read("mesh.audit.>")]
    copy = [json.loads(line) for line in lines]
    copy[1]["event"]["outcome"] = "denied"  # somebody rewrites history in the copy
    entries = [(row["seq"], decode(json.dumps(row["event"]).encode())) for row in copy]
    assert [b.seq for b in verify_chain(entries)] == [copy[2]["seq"]]  # type: ignore[arg-type]
