"""The `commands` read model: every command and the furthest step of its life (pure fold into SQL).

It reads two streams: the commands themselves (COMMANDS) and the devices' reports
(EVENTS). The two are applied in no particular order relative to each other, so each
statement is an upsert that only moves a command forward: issued < accepted < running
< a terminal state, and a terminal state is final.
"""

from __future__ import annotations

import json

from core.events import (
    CommandAccepted,
    CommandCanceled,
    CommandEvent,
    CommandExpired,
    CommandFailed,
    CommandIssued,
    CommandRejected,
    CommandRunning,
    CommandSucceeded,
    CommandTimedOut,
    Event,
)
from projections.projection import Park, Statement

RANK = {"issued": 0, "accepted": 1, "running": 2}  # anything else is terminal: rank 3

_RANK_SQL = "CASE {0} WHEN 'issued' THEN 0 WHEN 'accepted' THEN 1 WHEN 'running' THEN 2 ELSE 3 END"

_ADVANCE = (
    "INSERT INTO commands (command_id, device_id, state, result, detail, updated_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (command_id) DO UPDATE SET "
    "state = excluded.state, result = excluded.result, detail = excluded.detail, "
    "updated_at = excluded.updated_at, seq = excluded.seq "
    f"WHERE {_RANK_SQL.format('commands.state')} < {_RANK_SQL.format('excluded.state')}"
)


def step(event: CommandEvent) -> tuple[str, object, str]:
    """The state, result and detail a lifecycle event brings (pure)."""
    match event:
        case CommandAccepted():
            return "accepted", None, ""
        case CommandRunning():
            return "running", None, ""
        case CommandSucceeded(result=result):
            return "succeeded", result, ""
        case CommandFailed(error=error):
            return "failed", None, error
        case CommandTimedOut(timeout_s=timeout_s):
            return "timed_out", None, f"ran longer than {timeout_s:g} s"
        case CommandRejected(reason=reason):
            return "rejected", None, reason
        case CommandExpired():
            return "expired", None, "its time to live passed before it ran"
        case CommandCanceled(reason=reason):
            return "canceled", None, reason
    raise Park(f"unknown command step {event.tag}")


class Commands:
    name: str = "commands"
    version: int = 1
    sources: tuple[str, ...] = ("mesh.cmd.>", "mesh.evt.device.*.command")
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS commands ("
        " command_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, name TEXT, args TEXT, issued_at TEXT,"
        " ttl_s REAL, timeout_s REAL, actor TEXT, state TEXT NOT NULL, result TEXT, detail TEXT,"
        " updated_at TEXT, seq INTEGER)",
        "CREATE INDEX IF NOT EXISTS commands_by_device ON commands (device_id, issued_at)",
        # The fleet's recent commands (commands.list without a device); an index only, so
        # existing files gain it on open and the version stays.
        "CREATE INDEX IF NOT EXISTS commands_by_issue ON commands (issued_at)",
    )

    def apply(self, event: Event, seq: int) -> list[Statement]:
        at = event.occurred_at.isoformat()
        if isinstance(event, CommandIssued):
            return [
                (
                    "INSERT INTO commands (command_id, device_id, name, args, issued_at, ttl_s, timeout_s, actor,"
                    " state, updated_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'issued', ?, ?) "
                    "ON CONFLICT (command_id) DO UPDATE SET name = excluded.name, args = excluded.args,"
                    " issued_at = excluded.issued_at, ttl_s = excluded.ttl_s, timeout_s = excluded.timeout_s,"
                    " actor = excluded.actor",
                    (
                        event.command_id,
                        event.device_id,
                        event.name,
                        json.dumps(event.args),
                        at,
                        event.ttl_s,
                        event.timeout_s,
                        event.actor,
                        at,
                        seq,
                    ),
                )
            ]
        if isinstance(event, CommandEvent):
            state, result, detail = step(event)
            encoded = None if result is None else json.dumps(result)
            return [(_ADVANCE, (event.command_id, event.device_id, state, encoded, detail, at, seq))]
        raise Park(f"{event.tag} is not a command event")
