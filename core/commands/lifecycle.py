"""A command's life as one state machine (pure): its states, the step each event brings, and the TTL rule.

    issued ──> accepted ──> running ──> succeeded | failed | timed_out
       │           │                    rejected | expired | canceled
       └───────────┴──────────────────> (any terminal state)

Every reader of commands folds the same events with these functions: the command line
(mahavishnu.control.commands), the commands read model behind the NATS and HTTP queries
(projections.commands, projections.queries) and the agent's metrics. Before, each kept
its own copy of the states and of the expiry rule, and they disagreed: `cmd status` said
`expired` where the queries still said `issued`.

The states' values are the strings on the wire, in the read model and in the metrics'
`outcome` label: they never change.

Why a ranking: the read model reads the issue (stream COMMANDS) and the device's
reports (stream EVENTS) in no particular order relative to each other, and a report may
be read twice. A step replaces the state only when it ranks higher, so an earlier step
read late never moves a command back, and a terminal state is final.

Why the TTL rule is applied when reading: the agent judges a command's time to live
when the command reaches it and records `command.expired` then (docs/adr/0004), possibly
days later. Until a device took it, nothing records that the time passed; so a command
still `issued` after its time to live *reads* as expired (`effective_state`) while the
stored state stays what the events say.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from core.events.base import Event
from core.events.command import (
    CommandAccepted,
    CommandCanceled,
    CommandExpired,
    CommandFailed,
    CommandRejected,
    CommandRunning,
    CommandSucceeded,
    CommandTimedOut,
)


class CommandState(StrEnum):
    """Where a command is in its life; the value is the string stored and sent."""

    ISSUED = "issued"
    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELED = "canceled"


_FINAL = 3
# How far along each state is. Equal ranks do not replace each other: of two terminal
# states, the first one recorded stays.
RANK: Mapping[CommandState, int] = MappingProxyType(
    {
        CommandState.ISSUED: 0,
        CommandState.ACCEPTED: 1,
        CommandState.RUNNING: 2,
        CommandState.SUCCEEDED: _FINAL,
        CommandState.FAILED: _FINAL,
        CommandState.TIMED_OUT: _FINAL,
        CommandState.REJECTED: _FINAL,
        CommandState.EXPIRED: _FINAL,
        CommandState.CANCELED: _FINAL,
    }
)
TERMINAL: frozenset[CommandState] = frozenset(state for state, rank in RANK.items() if rank == _FINAL)

# The detail of a command that reads as expired by the TTL rule (no event says so yet).
NOT_TAKEN = "its device did not take it within its time to live"


class Step(NamedTuple):
    """What one lifecycle event says of its command: the state, the result (succeeded) and a detail (why)."""

    state: CommandState
    result: Any = None
    detail: str = ""


def step(event: Event) -> Step | None:
    """The step `event` brings its command to, or None when it is no step of a command's life (pure).

    Only the device's reports and the cancel are steps; the issue itself is the start
    (CommandState.ISSUED), not a step.
    """
    match event:
        case CommandAccepted():
            return Step(CommandState.ACCEPTED)
        case CommandRunning():
            return Step(CommandState.RUNNING)
        case CommandSucceeded(result=result):
            return Step(CommandState.SUCCEEDED, result)
        case CommandFailed(error=error):
            return Step(CommandState.FAILED, detail=error)
        case CommandTimedOut(timeout_s=timeout_s):
            return Step(CommandState.TIMED_OUT, detail=f"ran longer than {timeout_s:g} s")
        case CommandRejected(reason=reason):
            return Step(CommandState.REJECTED, detail=reason)
        case CommandExpired():
            return Step(CommandState.EXPIRED, detail="its time to live passed before it ran")
        case CommandCanceled(reason=reason):
            return Step(CommandState.CANCELED, detail=reason)
    return None


def ending(event: Event) -> CommandState | None:
    """The terminal state `event` ends its command with, or None when it ends no command (pure).

    The `outcome` label of the command metrics (control side and agent).
    """
    found = step(event)
    return found.state if found is not None and found.state in TERMINAL else None


def advances(current: CommandState, new: CommandState) -> bool:
    """Whether `new` may replace `current`: only a later step does, so a terminal state is final (pure)."""
    return RANK[new] > RANK[current]


def rank_sql(column: str) -> str:
    """An SQL expression of the rank of the state in `column`, generated from RANK (pure).

    The read model compares ranks in its upsert, so that the ranking is applied in the
    same statement that writes. A state this version does not know ranks as final: it is
    never overwritten by one it does.
    """
    cases = " ".join(f"WHEN '{state.value}' THEN {rank}" for state, rank in RANK.items())
    return f"CASE {column} {cases} ELSE {_FINAL} END"


def expires_at(issued_at: datetime, ttl_s: float) -> datetime:
    """When a command issued at `issued_at` stops being worth running (pure)."""
    return issued_at + timedelta(seconds=ttl_s)


def past_ttl(issued_at: datetime, ttl_s: float, now: datetime) -> bool:
    """Whether the time to live has passed at `now`: the agent then refuses the command as expired (pure)."""
    return now > expires_at(issued_at, ttl_s)


def effective_state(
    state: CommandState, *, issued_at: datetime | None, ttl_s: float | None, now: datetime
) -> CommandState:
    """The state a command reads as at `now`: an issued command whose time to live has passed is expired (pure).

    Any other state is what the events say: a command a device took in time will have its
    outcome reported. Without its issue time or time to live (the read model applied a
    report before the issue) the rule cannot apply and the state stays.
    """
    if state is CommandState.ISSUED and issued_at is not None and ttl_s is not None and past_ttl(issued_at, ttl_s, now):
        return CommandState.EXPIRED
    return state


def effective_step(current: Step, *, issued_at: datetime | None, ttl_s: float | None, now: datetime) -> Step:
    """`current` as it reads at `now` (effective_state), with the reason when the TTL rule made it expired (pure)."""
    state = effective_state(current.state, issued_at=issued_at, ttl_s=ttl_s, now=now)
    return current if state is current.state else Step(state, None, NOT_TAKEN)
