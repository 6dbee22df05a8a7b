"""Commands for devices, as pure logic: the command state machine (core.commands.lifecycle)."""

from core.commands.lifecycle import (
    NOT_TAKEN,
    RANK,
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

__all__ = [
    "NOT_TAKEN",
    "RANK",
    "TERMINAL",
    "CommandState",
    "Step",
    "advances",
    "effective_state",
    "effective_step",
    "ending",
    "expires_at",
    "past_ttl",
    "rank_sql",
    "step",
]
