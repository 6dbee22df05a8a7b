"""Requests to a running `up`: waiting until a read model has applied a position (mesh.ctl.projections.wait)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from core.events import CommandAccepted, CommandIssued
from core.store import EventStore
from mahavishnu.control.requests import RequestError, request_applied, serve
from projections import readers
from projections.commands import ISSUES, REPORTS
from projections.service import ProjectionService

KEY = secrets.token_hex(32)


@pytest.fixture
async def following(store: EventStore, nc: Client, tmp_path: Path) -> AsyncIterator[Path]:
    """The commands read model kept up to date in `tmp_path`, as `up` keeps it, and its requests served."""
    service = ProjectionService(store, tmp_path, KEY, names=("commands",))
    await service.start()
    stop = asyncio.Event()
    running = asyncio.create_task(service.run(stop))
    subscriptions = await serve(nc, service)
    try:
        yield tmp_path
    finally:
        for subscription in subscriptions:
            await subscription.unsubscribe()
        stop.set()
        await running
        await service.close()
        readers.close(tmp_path)


async def test_once_the_position_is_applied_the_row_is_there_to_read(
    following: Path, store: EventStore, nc: Client
) -> None:
    command_id = f"c-{uuid.uuid4().hex[:8]}"
    [issued] = await store.append(CommandIssued(command_id=command_id, device_id="dev-w", name="ping"))
    [accepted] = await store.append(CommandAccepted(command_id=command_id, device_id="dev-w"))
    positions = await request_applied(nc, "commands", {ISSUES: issued.seq, REPORTS: accepted.seq}, timeout_s=10)
    assert positions[ISSUES] >= issued.seq and positions[REPORTS] >= accepted.seq
    # Read at once, without polling: the wait answered only after the batch was committed.
    rows = await readers.rows(
        following / "commands.db", KEY, "SELECT state FROM commands WHERE command_id = ?", [command_id]
    )
    assert rows == [{"state": "accepted"}]


async def test_a_position_not_reached_in_time_is_an_error(following: Path, store: EventStore, nc: Client) -> None:
    beyond = await store.last_sequence("COMMANDS") + 1000  # nothing is stored there: never applied
    with pytest.raises(RequestError) as raised:
        await request_applied(nc, "commands", {ISSUES: beyond}, timeout_s=0.2)
    assert raised.value.status == 504 and "did not apply" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "positions", "words"),
    [("nothing", {ISSUES: 1}, "no read model 'nothing'"), ("commands", {"mesh.other.>": 1}, "no source mesh.other.>")],
)
async def test_a_wrong_request_is_refused(
    following: Path, nc: Client, name: str, positions: dict[str, int], words: str
) -> None:
    with pytest.raises(RequestError) as raised:
        await request_applied(nc, name, positions, timeout_s=5)
    assert raised.value.status == 400 and words in str(raised.value)


async def test_without_a_running_mesh_the_request_says_so(nc: Client) -> None:
    with pytest.raises(RequestError) as raised:
        await request_applied(nc, "commands", {ISSUES: 1}, timeout_s=1)
    assert raised.value.status == 503 and "mahavishnu up" in str(raised.value)
