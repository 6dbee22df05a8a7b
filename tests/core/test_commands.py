"""The command state machine (core.commands): every state, every transition, the TTL rule, the generated SQL.

The expectations are written out here, independently of the module's tables, so that a
change to the tables shows up as a failing test rather than as a new truth.
"""

from __future__ import annotations

import itertools
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from core.commands import (
    NOT_TAKEN,
    TERMINAL,
    CommandState,
    Step,
    advances,
    effective_state,
    effective_step,
    ending,
    expires_at,
    past_ttl,
    rank_sql,
    step,
)
from core.events import (
    CommandAccepted,
    CommandCanceled,
    CommandExpired,
    CommandFailed,
    CommandIssued,
    CommandRejected,
    CommandRunning,
    CommandSucceeded,
    CommandTimedOut,
    DeviceHeartbeat,
    Event,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
IDS = {"command_id": "c-1", "device_id": "d"}

# The strings on the wire, in the read model and in the metrics: never to change.
WIRE = ["issued", "accepted", "running", "succeeded", "failed", "timed_out", "rejected", "expired", "canceled"]
IN_FLIGHT = ["issued", "accepted", "running"]  # in this order
FINAL = {"succeeded", "failed", "timed_out", "rejected", "expired", "canceled"}


def test_the_states_are_exactly_the_wire_strings() -> None:
    assert [state.value for state in CommandState] == WIRE
    assert {state.value for state in TERMINAL} == FINAL
    assert CommandState("timed_out") is CommandState.TIMED_OUT and CommandState.TIMED_OUT == "timed_out"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (CommandAccepted(**IDS), Step(CommandState.ACCEPTED, None, "")),
        (CommandRunning(**IDS), Step(CommandState.RUNNING, None, "")),
        (CommandSucceeded(result={"pong": True}, **IDS), Step(CommandState.SUCCEEDED, {"pong": True}, "")),
        (CommandFailed(error="disk full", **IDS), Step(CommandState.FAILED, None, "disk full")),
        (CommandTimedOut(timeout_s=2.5, **IDS), Step(CommandState.TIMED_OUT, None, "ran longer than 2.5 s")),
        (CommandRejected(reason="no command 'x'", **IDS), Step(CommandState.REJECTED, None, "no command 'x'")),
        (CommandExpired(**IDS), Step(CommandState.EXPIRED, None, "its time to live passed before it ran")),
        (CommandCanceled(reason="by ann", **IDS), Step(CommandState.CANCELED, None, "by ann")),
    ],
    ids=lambda value: getattr(value, "tag", ""),
)
def test_each_lifecycle_event_brings_its_step(event: Event, expected: Step) -> None:
    assert step(event) == expected
    assert ending(event) == (expected.state if expected.state.value in FINAL else None)


@pytest.mark.parametrize(
    "event", [CommandIssued(name="ping", **IDS), DeviceHeartbeat(device_id="d", uptime_s=1.0, outbox=0)]
)
def test_the_issue_and_other_events_are_no_step(event: Event) -> None:
    assert step(event) is None
    assert ending(event) is None


def expected_to_advance(current: str, new: str) -> bool:
    if current in FINAL:
        return False  # a terminal state is final, even against another terminal one
    if new in FINAL:
        return True  # from any state in flight straight to an end (rejected, expired, canceled...)
    return IN_FLIGHT.index(new) > IN_FLIGHT.index(current)


@pytest.mark.parametrize(("current", "new"), list(itertools.product(WIRE, WIRE)))
def test_every_transition_moves_only_forward_and_a_terminal_state_is_final(current: str, new: str) -> None:
    assert advances(CommandState(current), CommandState(new)) is expected_to_advance(current, new)


def test_the_generated_sql_ranks_as_the_table_does() -> None:
    db = sqlite3.connect(":memory:")
    try:
        for current, new in itertools.product(WIRE, WIRE):
            sql = f"SELECT {rank_sql('?1')} < {rank_sql('?2')}"
            (moves,) = db.execute(sql, (current, new)).fetchone()
            assert bool(moves) is expected_to_advance(current, new), (current, new)
        # A state this version does not know (a newer writer's) is never overwritten.
        for known in WIRE:
            (moves,) = db.execute(f"SELECT {rank_sql('?1')} < {rank_sql('?2')}", ("paused", known)).fetchone()
            assert not moves
    finally:
        db.close()


def test_an_issued_command_reads_expired_once_its_time_to_live_passed() -> None:
    ttl = 5.0
    assert expires_at(T0, ttl) == T0 + timedelta(seconds=5)
    at_the_limit = T0 + timedelta(seconds=ttl)
    just_after = at_the_limit + timedelta(microseconds=1)
    assert not past_ttl(T0, ttl, at_the_limit) and past_ttl(T0, ttl, just_after)

    def read(state: CommandState, now: datetime) -> CommandState:
        return effective_state(state, issued_at=T0, ttl_s=ttl, now=now)

    assert read(CommandState.ISSUED, T0) is CommandState.ISSUED
    assert read(CommandState.ISSUED, at_the_limit) is CommandState.ISSUED
    assert read(CommandState.ISSUED, just_after) is CommandState.EXPIRED


@pytest.mark.parametrize("state", [s for s in CommandState if s is not CommandState.ISSUED])
def test_a_command_a_device_took_or_that_ended_reads_as_its_events_say_after_its_time_to_live(
    state: CommandState,
) -> None:
    long_after = T0 + timedelta(days=3)
    assert effective_state(state, issued_at=T0, ttl_s=5, now=long_after) is state


def test_without_its_issue_time_or_time_to_live_the_rule_cannot_apply() -> None:
    long_after = T0 + timedelta(days=3)
    assert effective_state(CommandState.ISSUED, issued_at=None, ttl_s=5, now=long_after) is CommandState.ISSUED
    assert effective_state(CommandState.ISSUED, issued_at=T0, ttl_s=None, now=long_after) is CommandState.ISSUED


def test_a_step_read_as_expired_says_why() -> None:
    issued = Step(CommandState.ISSUED)
    long_after = T0 + timedelta(days=3)
    assert effective_step(issued, issued_at=T0, ttl_s=5, now=long_after) == Step(CommandState.EXPIRED, None, NOT_TAKEN)
    assert effective_step(issued, issued_at=T0, ttl_s=5, now=T0) is issued
    done = Step(CommandState.SUCCEEDED, {"x": 1})
    assert effective_step(done, issued_at=T0, ttl_s=5, now=long_after) is done
