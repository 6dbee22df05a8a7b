"""The command-latency clock and the connected-devices count (pure parts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from core.events import CommandFailed, CommandIssued, CommandRunning, CommandSucceeded
from mahavishnu.observability.agents_online import connected_devices
from mahavishnu.observability.command_latency import CommandClock

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def issued(command_id: str, at: datetime = T0) -> CommandIssued:
    return CommandIssued(command_id=command_id, device_id="pump-1", name="ping", occurred_at=at)


def test_the_clock_measures_from_issue_to_end_by_outcome() -> None:
    clock = CommandClock()
    assert clock.seen(issued("c1")) is None
    assert clock.seen(issued("c2")) is None
    assert clock.seen(CommandRunning(command_id="c1", device_id="pump-1", occurred_at=T0)) is None
    ok = CommandSucceeded(command_id="c1", device_id="pump-1", occurred_at=T0 + timedelta(seconds=1.5))
    failed = CommandFailed(command_id="c2", device_id="pump-1", error="no", occurred_at=T0 + timedelta(seconds=4))
    assert clock.seen(ok) == ("succeeded", 1.5)
    assert clock.seen(failed) == ("failed", 4.0)
    assert len(clock) == 0


def test_an_end_without_a_known_issue_is_not_observed_and_the_clock_forgets_the_oldest() -> None:
    clock = CommandClock(capacity=2)
    for command_id in ("a", "b", "c"):
        clock.seen(issued(command_id))
    assert len(clock) == 2
    assert clock.seen(CommandSucceeded(command_id="a", device_id="pump-1", occurred_at=T0)) is None
    assert clock.seen(CommandSucceeded(command_id="c", device_id="pump-1", occurred_at=T0)) == ("succeeded", 0.0)


def test_a_clock_that_went_backwards_counts_zero_not_a_negative_latency() -> None:
    clock = CommandClock()
    clock.seen(issued("c1"))
    late = CommandSucceeded(command_id="c1", device_id="pump-1", occurred_at=T0 - timedelta(seconds=3))
    assert clock.seen(late) == ("succeeded", 0.0)


def test_connected_devices_counts_each_device_once_across_servers() -> None:
    def answer(*users: str) -> bytes:
        return json.dumps({"data": {"connections": [{"authorized_user": user} for user in users]}}).encode()

    device_of = {"mahavishnu:cert:a1": "pump-1", "mahavishnu:cert:a2": "pump-1", "mahavishnu:cert:b1": "pump-2"}
    answers = [
        answer("mahavishnu:cert:a1", "mahavishnu:cert:c0"),  # c0: control, not a device
        answer("mahavishnu:cert:a2", "mahavishnu:cert:b1"),  # pump-1 again, through its rotated certificate
        b"not json",
        json.dumps({"data": {}}).encode(),
    ]
    assert connected_devices(answers, device_of) == {"pump-1", "pump-2"}
