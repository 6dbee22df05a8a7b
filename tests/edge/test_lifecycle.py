"""edge.lifecycle: every branch of admit(), the outcome mapping, and execute() under timeouts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from core.events import (
    CommandAccepted,
    CommandEvent,
    CommandExpired,
    CommandFailed,
    CommandIssued,
    CommandRejected,
    CommandRunning,
    CommandSucceeded,
    CommandTimedOut,
)
from edge.builtin import Sleep, default_registry
from edge.errors import CommandError
from edge.handlers import HandlerContext, Registry
from edge.lifecycle import (
    INTERRUPTED,
    MAX_RESULT_BYTES,
    TimedOut,
    admit,
    effective_timeout,
    execute,
    outcome_events,
    running_events,
)
from tests.edge.samples import DEVICE, T0, issued
from tests.edge.samples import meta_of as _meta

REGISTRY = default_registry()
LATER = T0 + timedelta(seconds=5)


def check_meta(event: CommandEvent, command: CommandIssued) -> None:
    assert event.command_id == command.command_id
    assert event.device_id == DEVICE
    assert event.actor == DEVICE
    assert event.correlation_id == (command.correlation_id or command.command_id)
    assert event.causation_id == command.event_id
    assert event.event_id != command.event_id


# -- admit --------------------------------------------------------------------------------


def test_a_new_valid_command_runs() -> None:
    command = issued("sleep", {"seconds": 1}, correlation_id="req-9")

    admission = admit(command, now=LATER, registry=REGISTRY, ledger_state="new")

    assert admission.action == "run"
    assert admission.handler is REGISTRY.get("sleep")
    [accepted] = admission.events
    assert isinstance(accepted, CommandAccepted)
    assert accepted.occurred_at == LATER
    assert accepted.correlation_id == "req-9"
    check_meta(accepted, command)
    [running] = running_events(command, now=LATER)
    assert isinstance(running, CommandRunning) and running.occurred_at == LATER
    check_meta(running, command)


@pytest.mark.parametrize("now", [LATER, T0 + timedelta(days=1)])
def test_a_finished_command_is_skipped_silently(now: datetime) -> None:
    admission = admit(issued(), now=now, registry=REGISTRY, ledger_state="finished")

    assert admission.action == "skip"
    assert admission.events == ()
    assert admission.handler is None


@pytest.mark.parametrize("now", [LATER, T0 + timedelta(days=1)])
def test_a_started_command_was_interrupted_and_never_runs_again(now: datetime) -> None:
    command = issued("sleep", {"seconds": 1})

    admission = admit(command, now=now, registry=REGISTRY, ledger_state="started")

    assert admission.action == "interrupted"
    assert admission.handler is None
    [failed] = admission.events
    assert isinstance(failed, CommandFailed)
    assert failed.error == "interrupted: the agent stopped while the command ran; not run again" == INTERRUPTED
    check_meta(failed, command)


def test_a_command_past_its_ttl_expires() -> None:
    command = issued(ttl_s=30)

    at_ttl = admit(command, now=T0 + timedelta(seconds=30), registry=REGISTRY, ledger_state="new")
    past = admit(command, now=T0 + timedelta(seconds=30.001), registry=REGISTRY, ledger_state="new")

    assert at_ttl.action == "run"
    assert past.action == "expired"
    assert past.handler is None
    [expired] = past.events
    assert isinstance(expired, CommandExpired)
    check_meta(expired, command)


def test_an_unknown_command_is_rejected() -> None:
    command = issued("reboot")

    admission = admit(command, now=LATER, registry=REGISTRY, ledger_state="new")

    assert admission.action == "rejected"
    [rejected] = admission.events
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason.startswith(
        "this device has no command 'reboot'; it knows config.apply, config.get, config.set, echo"
    )
    check_meta(rejected, command)


def test_invalid_arguments_are_rejected() -> None:
    admission = admit(issued("sleep", {"seconds": -1}), now=LATER, registry=REGISTRY, ledger_state="new")

    assert admission.action == "rejected"
    assert admission.events[0] == CommandRejected(
        reason="sleep needs 'seconds', a number from 0 to 3600", **_meta(admission.events[0])
    )


ARGS_ERROR = KeyError("args")


@dataclass(frozen=True)
class Broken:
    name: str = "broken"
    timeout_s: float = 5.0
    failure: BaseException = ARGS_ERROR

    def validate(self, args: dict[str, Any]) -> None:
        raise self.failure

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        raise self.failure


def test_a_crashing_argument_check_is_a_rejection() -> None:
    admission = admit(issued("broken"), now=LATER, registry=Registry([Broken()]), ledger_state="new")

    assert admission.action == "rejected"
    [rejected] = admission.events
    assert isinstance(rejected, CommandRejected)
    assert rejected.reason == "the arguments check of 'broken' failed unexpectedly (KeyError: 'args')"


# -- outcome_events ---------------------------------------------------------------------


def test_outcomes_map_to_their_events() -> None:
    command = issued()

    [succeeded] = outcome_events(command, {"pong": True}, now=LATER)
    [empty] = outcome_events(command, None, now=LATER)
    [failed] = outcome_events(command, CommandError("pump 2 did not answer"), now=LATER)
    [timed_out] = outcome_events(command, TimedOut(2.5), now=LATER)
    [crashed] = outcome_events(command, ZeroDivisionError("division by zero\n  at line 3"), now=LATER)

    assert succeeded == CommandSucceeded(result={"pong": True}, **_meta(succeeded))
    assert isinstance(empty, CommandSucceeded) and empty.result is None
    assert failed == CommandFailed(error="pump 2 did not answer", **_meta(failed))
    assert timed_out == CommandTimedOut(timeout_s=2.5, **_meta(timed_out))
    assert crashed == CommandFailed(
        error="the handler failed unexpectedly (ZeroDivisionError: division by zero)", **_meta(crashed)
    )
    for event in (succeeded, failed, timed_out, crashed):
        assert event.occurred_at == LATER
        check_meta(event, command)


def test_results_that_cannot_be_sent_are_failures() -> None:
    [not_json] = outcome_events(issued(), {"x": object()})
    [too_big] = outcome_events(issued(), "x" * MAX_RESULT_BYTES)

    assert isinstance(not_json, CommandFailed) and not_json.error.startswith(
        "the handler returned a result that is not JSON"
    )
    assert isinstance(too_big, CommandFailed) and "more than the 921600 that fit in one message" in too_big.error


def test_long_error_messages_are_clipped() -> None:
    [failed] = outcome_events(issued(), CommandError("e" * 5000))

    assert isinstance(failed, CommandFailed) and len(failed.error) == 2000 and failed.error.endswith("…")


# -- execute --------------------------------------------------------------------------------


def test_the_smaller_timeout_wins() -> None:
    assert effective_timeout(issued(timeout_s=10), Sleep(timeout_s=3)) == 3
    assert effective_timeout(issued(timeout_s=2), Sleep(timeout_s=3)) == 2


async def test_execute_reports_success(context: HandlerContext) -> None:
    command = issued("echo", {"a": 1})

    [event] = await execute(command, REGISTRY.get("echo"), context)

    assert event == CommandSucceeded(result={"a": 1}, **_meta(event))
    check_meta(event, command)


async def test_a_long_sleep_times_out_at_the_handler_limit(context: HandlerContext) -> None:
    [event] = await execute(issued("sleep", {"seconds": 60}, timeout_s=30), Sleep(timeout_s=0.05), context)

    assert event == CommandTimedOut(timeout_s=0.05, **_meta(event))


async def test_a_long_sleep_times_out_at_the_command_limit(context: HandlerContext) -> None:
    [event] = await execute(issued("sleep", {"seconds": 60}, timeout_s=0.05), Sleep(), context)

    assert event == CommandTimedOut(timeout_s=0.05, **_meta(event))


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (CommandError("valve stuck"), "valve stuck"),
        (
            RuntimeError("boom\nTraceback (most recent call last):"),
            "the handler failed unexpectedly (RuntimeError: boom)",
        ),
        (TimeoutError(), "the handler failed unexpectedly (TimeoutError)"),  # its own, not our deadline
    ],
)
async def test_handler_failures_become_one_line(context: HandlerContext, failure: Exception, error: str) -> None:
    [event] = await execute(issued("broken"), Broken(failure=failure), context)

    assert event == CommandFailed(error=error, **_meta(event))


async def test_the_agent_s_own_cancellation_propagates(context: HandlerContext) -> None:
    task = asyncio.create_task(execute(issued("sleep", {"seconds": 60}), Sleep(), context))
    await asyncio.sleep(0)  # let it start: ordering, not timing
    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
