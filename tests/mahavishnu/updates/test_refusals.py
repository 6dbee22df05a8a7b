"""Each update a device refuses is audited, with the device as actor and the refusal's word; nothing else is."""

from __future__ import annotations

import asyncio
import uuid

import nats.js.errors

from core.events import AuditRecorded, CommandFailed, CommandSucceeded
from core.store import EventStore
from mahavishnu.updates import refusals
from tests.waiting import eventually_async


async def test_a_refused_update_is_audited_and_other_reports_are_not(store: EventStore) -> None:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    stop = asyncio.Event()
    following = asyncio.create_task(refusals.follow(store, stop))
    try:
        # The consumer takes what comes after it was made: wait for it, then report.
        async def made() -> bool:
            try:
                await store.js.consumer_info(refusals.STREAM, refusals.CONSUMER)
            except nats.js.errors.NotFoundError:
                return False
            return True

        await eventually_async(made, timeout=10, what="the refusals consumer")
        await store.append_many(
            [
                CommandFailed(command_id="u-1", device_id=device, error="update failed: disk full", actor=device),
                CommandSucceeded(command_id="u-2", device_id=device, result={"state": "committed"}, actor=device),
                CommandFailed(
                    command_id="u-3",
                    device_id=device,
                    error="update refused (signatures): targets: 0 of 1 signatures by its keys",
                    actor=device,
                ),
            ]
        )

        async def audited() -> list[AuditRecorded]:
            return [
                stored.event
                async for stored in store.read("mesh.audit.update.>")
                if isinstance(stored.event, AuditRecorded) and stored.event.target == device
            ]

        async def one() -> bool:
            return len(await audited()) == 1

        await eventually_async(one, timeout=10, what="the refusal's audit entry")
    finally:
        stop.set()
        await following
    [entry] = await audited()
    assert (entry.actor, entry.action, entry.outcome) == (device, "update.refused", "denied")
    assert entry.details == {
        "command_id": "u-3",
        "refusal": "signatures",
        "reason": "update refused (signatures): targets: 0 of 1 signatures by its keys",
    }


def test_only_a_refusal_makes_an_entry() -> None:
    failed = CommandFailed(command_id="c", device_id="d", error="update rolled back: health check failed", actor="d")
    assert refusals.refusal_entry(failed) is None
    refused = CommandFailed(command_id="c", device_id="d", error="update refused (freeze): expired", actor="d")
    assert refusals.refusal_entry(refused) is not None
