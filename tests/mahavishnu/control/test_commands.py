"""Commands from the control side: state folded from events, send with a time to live, cancel before delivery."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from core.events import (
    CommandAccepted,
    CommandCanceled,
    CommandIssued,
    CommandRunning,
    CommandSucceeded,
)
from core.store import EventStore
from mahavishnu.control import commands, devices
from tests.harness import Mesh

ISSUED = CommandIssued(command_id="c-1", device_id="d", name="ping")


def test_the_state_follows_the_lifecycle_and_a_terminal_state_is_final() -> None:
    steps = [
        CommandAccepted(command_id="c-1", device_id="d"),
        CommandRunning(command_id="c-1", device_id="d"),
        CommandSucceeded(command_id="c-1", device_id="d", result={"pong": True}),
        CommandCanceled(command_id="c-1", device_id="d"),  # too late: ignored
        CommandAccepted(command_id="c-other", device_id="d"),  # another command: ignored
    ]
    seen = [commands.fold(ISSUED, steps[:n]).state for n in range(len(steps) + 1)]
    assert seen == ["issued", "accepted", "running", "succeeded", "succeeded", "succeeded"]
    assert commands.fold(ISSUED, steps).result == {"pong": True}


async def test_a_sent_command_is_found_with_its_arguments(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    await devices.enroll(mesh.home, mesh.settings, store, "dev-cmd", out_dir=tmp_path / "d")
    command = await commands.send(store, "dev-cmd", "echo", {"x": 1}, ttl_s=60, timeout_s=5, actor="control")
    view = await commands.find(store, command.command_id)
    assert (view.state, view.name, view.args) == ("issued", "echo", {"x": 1})
    assert [v.command_id for v in await commands.list_for(store, "dev-cmd")] == [command.command_id]


def test_a_command_nobody_took_within_its_time_to_live_reads_as_expired() -> None:
    later = ISSUED.occurred_at + timedelta(seconds=ISSUED.ttl_s + 1)
    assert commands.fold(ISSUED, [], now=later).state == "expired"
    assert commands.fold(ISSUED, [], now=ISSUED.occurred_at).state == "issued"
    accepted = [CommandAccepted(command_id="c-1", device_id="d")]
    assert commands.fold(ISSUED, accepted, now=later).state == "accepted"  # taken in time: its outcome will come


async def test_a_command_not_yet_delivered_can_be_canceled(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    await devices.enroll(mesh.home, mesh.settings, store, "dev-cancel", out_dir=tmp_path / "d")
    command = await commands.send(store, "dev-cancel", "ping", {}, ttl_s=60, timeout_s=5, actor="control")
    await commands.cancel(store, command.command_id, actor="control")
    assert await store.last_subject_sequence(command.subject()) == 0  # gone: it can never be delivered
    with pytest.raises(commands.CommandRefused, match="no command"):
        await commands.find(store, command.command_id)
    events = [s.event async for s in store.read("mesh.evt.device.dev-cancel.command")]
    assert [type(e) for e in events] == [CommandCanceled]


async def test_an_unknown_command_is_named(store: EventStore) -> None:
    with pytest.raises(commands.CommandRefused, match="c-nothing"):
        await commands.find(store, "c-nothing")


async def test_a_command_sent_again_with_its_fixed_id_is_stored_once(store: EventStore) -> None:
    sent = [
        await commands.send(
            store, "dev-fixed", "ping", {}, ttl_s=60, timeout_s=5, actor="control", command_id="cp-0123456789ab-a1-x"
        )
        for _ in range(2)
    ]
    assert sent[0].event_id == sent[0].command_id == "cp-0123456789ab-a1-x"
    stored = [s.event async for s in store.read("mesh.cmd.dev-fixed.>")]
    assert [e.command_id for e in stored if isinstance(e, CommandIssued)] == ["cp-0123456789ab-a1-x"]
