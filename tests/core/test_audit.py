"""The audit trail's hash chain: intact when appended concurrently, and every kind of tampering is found."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from core.audit import GENESIS, AuditTrail, audit_hash, verify_chain
from core.errors import AppendFailed, StoreError, StoreUnavailable
from core.events import AuditRecorded, decode
from core.store import Appended, EventStore


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


async def audit_chain(store: EventStore) -> list[tuple[int, AuditRecorded | None]]:
    return [(s.seq, s.event if isinstance(s.event, AuditRecorded) else None) async for s in store.read("mesh.audit.>")]


async def test_records_made_together_go_out_together_in_the_order_they_were_made(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    appends: list[int] = []
    append_chain = store.append_chain

    async def counted(events: list[AuditRecorded], **after: Any) -> tuple[list[Appended], StoreError | None]:
        appends.append(len(events))
        return await append_chain(events, **after)

    monkeypatch.setattr(store, "append_chain", counted)
    trail = AuditTrail(store)
    records = await asyncio.gather(*(trail.record(actor="g", category="test", action=f"group-{i}") for i in range(40)))
    assert sum(appends) == 40 and len(appends) < 40  # batched: fewer appends than records
    entries = await audit_chain(store)
    assert verify_chain(entries) == []
    ours = [e for _, e in entries if e is not None and e.action.startswith("group-")]
    assert ours == records
    assert [e.action for e in ours] == [f"group-{i}" for i in range(40)]


async def test_two_trails_writing_at_once_keep_one_chain(store: EventStore) -> None:
    first, second = AuditTrail(store), AuditTrail(store)
    await first.record(actor="one", category="test", action="warm")  # first now remembers a last entry
    await asyncio.gather(
        *(
            trail.record(actor=f"t{i}", category="test", action="two-trails")
            for i in range(15)
            for trail in (first, second)
        )
    )
    entries = await audit_chain(store)
    assert verify_chain(entries) == []
    assert sum(1 for _, e in entries if e is not None and e.action == "two-trails") == 30


async def test_a_failed_append_fails_its_callers_and_the_next_record_is_chained(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditTrail(store)
    await trail.record(actor="f", category="test", action="before")
    append_chain = store.append_chain

    async def refused(events: list[AuditRecorded], **after: Any) -> tuple[list[Appended], StoreError | None]:
        monkeypatch.setattr(store, "append_chain", append_chain)  # only this once
        raise AppendFailed("the server did not answer in time")

    await AuditTrail(store).record(actor="other", category="test", action="meanwhile")  # trail's last entry is stale
    monkeypatch.setattr(store, "append_chain", refused)
    failed = await asyncio.gather(
        *(trail.record(actor="f", category="test", action="lost") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, AppendFailed) for outcome in failed)
    after = await trail.record(actor="f", category="test", action="after")
    entries = await audit_chain(store)
    assert verify_chain(entries) == []
    assert entries[-1][1] == after


async def test_when_the_end_of_the_chain_cannot_be_read_its_callers_get_the_reason_not_a_cancel(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditTrail(store)  # new: it reads the end of the chain before its first append
    last_sequence = store.last_sequence

    async def unanswered(stream: str) -> int:
        monkeypatch.setattr(store, "last_sequence", last_sequence)  # only this once
        raise StoreUnavailable("JetStream API $JS.API.STREAM.INFO.AUDIT: the server did not answer in time")

    monkeypatch.setattr(store, "last_sequence", unanswered)
    failed = await asyncio.gather(
        *(trail.record(actor="f", category="test", action="unread") for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, StoreUnavailable) for outcome in failed), failed
    after = await trail.record(actor="f", category="test", action="after-unread")
    entries = await audit_chain(store)
    assert verify_chain(entries) == []
    assert entries[-1][1] == after


async def test_an_entry_that_cannot_be_stored_fails_alone(store: EventStore) -> None:
    trail = AuditTrail(store)
    outcomes = await asyncio.gather(
        trail.record(actor="fine", category="test", action="alone-1"),
        trail.record(actor="not a token", category="test", action="alone-bad"),
        trail.record(actor="fine", category="test", action="alone-big", details={"blob": "x" * 2_000_000}),
        trail.record(actor="fine", category="test", action="alone-2"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], ValueError) and isinstance(outcomes[2], AppendFailed)
    stored = [e.action for _, e in await audit_chain(store) if e is not None and e.action.startswith("alone-")]
    assert stored == ["alone-1", "alone-2"]
