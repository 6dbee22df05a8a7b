"""The control services record through their store's one audit trail, so their records share its group commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.audit import AuditTrail, verify_chain
from core.errors import StoreError
from core.events import AuditRecorded
from core.store import Appended, EventStore
from mahavishnu.control import commands, devices

PAIRS = 8  # a command sent and a desired state set, for each of this many devices


async def test_devices_and_commands_recording_at_once_share_one_trail_and_its_group_commit(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[AuditTrail] = []
    init = AuditTrail.__init__

    def counted_init(trail: AuditTrail, *args: Any, **kwargs: Any) -> None:
        made.append(trail)
        init(trail, *args, **kwargs)

    monkeypatch.setattr(AuditTrail, "__init__", counted_init)
    trail = store.audit
    assert store.audit is trail

    # A record is in flight, its append held until both modules have asked for all of theirs:
    # they queue behind it meanwhile and must go out together, as the next batch.
    entered, in_flight, everyone = 0, asyncio.Event(), asyncio.Event()
    record = trail.record

    async def entering(**entry: Any) -> AuditRecorded:
        nonlocal entered
        entered += 1
        if entered == 2 * PAIRS:
            everyone.set()
        return await record(**entry)

    batches: list[list[str]] = []
    append_chain = store.append_chain

    async def held(events: list[AuditRecorded], **after: Any) -> tuple[list[Appended], StoreError | None]:
        in_flight.set()
        await asyncio.wait_for(everyone.wait(), 10)
        batches.append([e.action for e in events])
        return await append_chain(events, **after)

    monkeypatch.setattr(store, "append_chain", held)
    first = asyncio.create_task(record(actor="ops", category="test", action="first"))
    await asyncio.wait_for(in_flight.wait(), 10)
    monkeypatch.setattr(trail, "record", entering)

    await asyncio.gather(
        *(commands.send(store, f"dev-share-{i}", "ping", {}, ttl_s=60, timeout_s=5, actor="ops") for i in range(PAIRS)),
        *(devices.desire(store, f"dev-share-{i}", {}, actor="ops") for i in range(PAIRS)),
    )
    await first

    assert made == [trail]  # neither module made a trail of its own
    assert batches[0] == ["first"]
    assert sorted(batches[1]) == ["command.send"] * PAIRS + ["device.desire"] * PAIRS  # one append for both
    assert len(batches) == 2
    stored = [(s.seq, s.event) async for s in store.read("mesh.audit.>")]
    entries = [(seq, event if isinstance(event, AuditRecorded) else None) for seq, event in stored]
    assert verify_chain(entries) == []
    ours = [e for _, e in entries if e is not None and e.actor == "ops"]
    assert sorted(e.action for e in ours) == ["command.send"] * PAIRS + ["device.desire"] * PAIRS + ["first"]
