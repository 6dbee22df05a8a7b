"""A command's life on the device, as pure decisions that return the events to report.

    admit(command, now=, registry=, ledger_state=)  ->  Admission
        skip         already finished: report nothing, just acknowledge the message again
        interrupted  started but never finished (the agent died mid-run): CommandFailed, not run again
        expired      its time to live passed before it arrived: CommandExpired, never run
        rejected     unknown name or invalid arguments: CommandRejected(reason), never run
        run          CommandAccepted now; running_events() when it starts; execute() for the outcome

    outcome_events(command, outcome)  ->  CommandSucceeded | CommandFailed | CommandTimedOut

Every event names the device as its actor, the command's correlation id (or its
command id) as correlation id, and the CommandIssued's event id as causation id.
The agent persists these lists with `AgentState.mark_started` / `finish`, which is
what makes a command run at most once and report exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

import msgspec

from core.commands import past_ttl
from core.events import (
    CommandAccepted,
    CommandExpired,
    CommandFailed,
    CommandIssued,
    CommandRejected,
    CommandRunning,
    CommandSucceeded,
    CommandTimedOut,
    Event,
)
from core.events.base import utc_now
from edge.errors import CommandError, InvalidArguments, UnknownCommand
from edge.handlers import Handler, HandlerContext, Registry

LedgerState = Literal["new", "started", "finished"]
Action = Literal["skip", "interrupted", "expired", "rejected", "run"]

INTERRUPTED = "interrupted: the agent stopped while the command ran; not run again"
MAX_RESULT_BYTES = 900 * 1024  # a result must fit in one message under the server's 1 MB max_payload
MAX_ERROR_CHARS = 2000


class Admission(msgspec.Struct, frozen=True, kw_only=True):
    """What to do with a delivered command: `action`, the `events` to report now, and the handler to run."""

    action: Action
    events: tuple[Event, ...] = ()
    handler: Handler | None = None  # set only when action == "run"


class TimedOut(msgspec.Struct, frozen=True):
    """The outcome of a run stopped by its timeout."""

    timeout_s: float


def admit(command: CommandIssued, *, now: datetime, registry: Registry, ledger_state: LedgerState) -> Admission:
    """Decide whether `command` runs (pure); `now` must be timezone-aware, like the events' times."""
    meta = _meta(command, now)
    if ledger_state == "finished":
        return Admission(action="skip")
    if ledger_state == "started":
        return Admission(action="interrupted", events=(CommandFailed(error=INTERRUPTED, **meta),))
    if past_ttl(command.occurred_at, command.ttl_s, now):
        return Admission(action="expired", events=(CommandExpired(**meta),))
    try:
        handler = registry.get(command.name)
        handler.validate(command.args)
    except (UnknownCommand, InvalidArguments) as exc:
        return Admission(action="rejected", events=(CommandRejected(reason=str(exc), **meta),))
    except Exception as exc:  # a plugin's check is broken: refuse rather than redeliver forever
        reason = f"the arguments check of {command.name!r} failed unexpectedly ({one_line(exc)})"
        return Admission(action="rejected", events=(CommandRejected(reason=reason, **meta),))
    return Admission(action="run", events=(CommandAccepted(**meta),), handler=handler)


def recovered_events(command: CommandIssued, registry: Registry, *, now: datetime | None = None) -> list[Event] | None:
    """For an interrupted command: the outcome its handler knows it had (`recovered`), or None for "interrupted".

    update.install ends an update a dead agent left at the next start (rolled back), and
    that ending, not "interrupted", is what the command reports.
    """
    if command.name not in registry:
        return None
    recovered = getattr(registry.get(command.name), "recovered", None)
    if recovered is None:
        return None
    outcome = recovered(command.command_id)
    return None if outcome is None else outcome_events(command, outcome, now=now)


def running_events(command: CommandIssued, *, now: datetime | None = None) -> list[Event]:
    """What to report when an admitted command starts running."""
    return [CommandRunning(**_meta(command, now or utc_now()))]


def effective_timeout(command: CommandIssued, handler: Handler) -> float:
    """The smaller of the handler's own limit and the command's: an operator can shorten, never lengthen."""
    return min(handler.timeout_s, command.timeout_s)


def outcome_events(command: CommandIssued, outcome: Any, *, now: datetime | None = None) -> list[Event]:
    """Map a run's outcome to its event (pure).

    `outcome` is the handler's result (CommandSucceeded), an exception (CommandFailed:
    a CommandError's message as it is, anything else as one safe line without a
    traceback) or a TimedOut (CommandTimedOut). A result that is not JSON, or too large
    to send, becomes CommandFailed, since it could never be reported.
    """
    meta = _meta(command, now or utc_now())
    match outcome:
        case TimedOut(timeout_s=timeout_s):
            return [CommandTimedOut(timeout_s=timeout_s, **meta)]
        case CommandError(message=message):
            return [CommandFailed(error=_clip(message) or "the command failed", **meta)]
        case BaseException():
            return [CommandFailed(error=f"the handler failed unexpectedly ({one_line(outcome)})", **meta)]
    problem = _unsendable(outcome)
    if problem:
        return [CommandFailed(error=problem, **meta)]
    return [CommandSucceeded(result=outcome, **meta)]


async def execute(command: CommandIssued, handler: Handler, context: HandlerContext) -> list[Event]:
    """Run an admitted command under its effective timeout and return its outcome events.

    Never raises for the handler's sake: failures and timeouts become events. Only the
    agent's own cancellation (shutdown) propagates.
    """
    limit = effective_timeout(command, handler)
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            result = await handler.run(dict(command.args), context)
    except TimeoutError as exc:
        # Only our deadline is a timeout; a TimeoutError of the handler's own is a failure.
        return outcome_events(command, TimedOut(limit) if deadline.expired() else exc)
    except Exception as exc:
        return outcome_events(command, exc)
    return outcome_events(command, result)


def one_line(exc: BaseException) -> str:
    """`TypeName: first line of the message`, clipped: safe to show an operator, no traceback."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _meta(command: CommandIssued, now: datetime) -> dict[str, Any]:
    return {
        "command_id": command.command_id,
        "device_id": command.device_id,
        "occurred_at": now,
        "actor": command.device_id,
        "correlation_id": command.correlation_id or command.command_id,
        "causation_id": command.event_id,
    }


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def _unsendable(result: Any) -> str:
    try:
        size = len(msgspec.json.encode(result))
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        return f"the handler returned a result that is not JSON ({one_line(exc)})"
    if size > MAX_RESULT_BYTES:
        return f"the result is {size} bytes of JSON, more than the {MAX_RESULT_BYTES} that fit in one message"
    return ""
