"""The `commands` read model: every command and the furthest step of its life (pure fold into SQL).

It reads two streams: the commands themselves (COMMANDS) and the devices' reports
(EVENTS). The two are applied in no particular order relative to each other, so each
statement is an upsert that only moves a command forward: issued < accepted < running
< a terminal state, and a terminal state is final. The steps and that ranking are the
command state machine's (core.commands), the ranking's SQL generated from it.

The rows store what the events say. A command still issued after its time to live is
read as expired by the queries (projections.queries, core.commands.effective_state),
not stored so: no event has happened, and the answer depends on when one asks.
"""

from __future__ import annotations

import json

from core import subjects
from core.commands import CommandState, rank_sql, step
from core.events import CommandEvent, CommandIssued, Event
from projections.projection import Park, Statement

# The two sources, named for whoever waits until this model has applied a position of them.
ISSUES = "mesh.cmd.>"  # the commands themselves, stream COMMANDS
REPORTS = subjects.COMMAND_REPORTS  # the devices' reports and the cancels, stream EVENTS

_ADVANCE = (
    "INSERT INTO commands (command_id, device_id, state, result, detail, updated_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (command_id) DO UPDATE SET "
    "state = excluded.state, result = excluded.result, detail = excluded.detail, "
    "updated_at = excluded.updated_at, seq = excluded.seq "
    f"WHERE {rank_sql('commands.state')} < {rank_sql('excluded.state')}"
)


class Commands:
    name: str = "commands"
    version: int = 1
    sources: tuple[str, ...] = (ISSUES, REPORTS)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS commands ("
        " command_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, name TEXT, args TEXT, issued_at TEXT,"
        " ttl_s REAL, timeout_s REAL, actor TEXT, state TEXT NOT NULL, result TEXT, detail TEXT,"
        " updated_at TEXT, seq INTEGER)",
        "CREATE INDEX IF NOT EXISTS commands_by_device ON commands (device_id, issued_at)",
        # The fleet's recent commands (commands.list without a device); an index only, so
        # existing files gain it on open and the version stays.
        "CREATE INDEX IF NOT EXISTS commands_by_issue ON commands (issued_at)",
        # The updates sent (updates.compliance asks for every `update.install`); an index only, too.
        "CREATE INDEX IF NOT EXISTS commands_by_name ON commands (name, issued_at)",
    )

    def apply(self, event: Event, seq: int) -> list[Statement]:
        at = event.occurred_at.isoformat()
        if isinstance(event, CommandIssued):
            return [
                (
                    "INSERT INTO commands (command_id, device_id, name, args, issued_at, ttl_s, timeout_s, actor,"
                    " state, updated_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
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
                        CommandState.ISSUED.value,
                        at,
                        seq,
                    ),
                )
            ]
        if isinstance(event, CommandEvent):
            found = step(event)
            if found is None:
                raise Park(f"unknown command step {event.tag}")
            encoded = None if found.result is None else json.dumps(found.result)
            row = (event.command_id, event.device_id, found.state.value, encoded, found.detail, at, seq)
            return [(_ADVANCE, row)]
        raise Park(f"{event.tag} is not a command event")
