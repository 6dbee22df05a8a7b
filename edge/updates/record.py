"""The update record: which update is at which step, and which version of each artifact is installed.

Both live in the agent's state file (edge.state, tables `updates` and `installed`) rather
than a file of their own, because that file already is what the agent trusts after a
crash: its writes are fsynced transactions, and "committed" and "installed version" must
change together, in one of them. A row in `updates` per update.install command:

    downloading -> installing -> rebooting -> committing -> committed
    (any step before rebooting) -> failed | refused       nothing was switched
    rebooting | committing -> rolled_back                 switched, then switched back

Each step is written BEFORE the installer does it (write-ahead), so after a kill -9 the
row says the furthest the device may have got: a row left in downloading or installing
had switched nothing; one left in rebooting or committing may have switched and is
rolled back at the next start (edge.updates.recovery).

`installed` holds the last committed version of each artifact name: the anti-rollback
counter (what a downgrade check compares to), and what the agent reports as "software".
Only a commit moves it: a rollback returns to the version it holds. A commit always
moves it, also down: a lower version is committed only when the operator allowed the
downgrade, and that choice is the new baseline.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from core.events.base import utc_now
from core.updates.states import ENDED, UpdateState
from edge.state import AgentState

SWITCHED = frozenset({UpdateState.REBOOTING, UpdateState.COMMITTING})  # the new version may be active
_COLUMNS = "command_id, name, version, previous, state, prepared, reason, refusal"


class Record(msgspec.Struct, frozen=True, kw_only=True):
    """One update's row; `prepared` is what the installer returned from install (to activate or undo it)."""

    command_id: str
    name: str
    version: str
    previous: str | None
    state: UpdateState
    prepared: dict[str, Any] = {}
    reason: str = ""
    refusal: str | None = None

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def result(self) -> dict[str, Any]:
        """The update.install command's result: its state, the versions, and why when it did not commit."""
        result: dict[str, Any] = {
            "state": str(self.state),
            "name": self.name,
            "version": self.version,
            "previous": self.previous,
        }
        if self.reason:
            result["reason"] = self.reason
        if self.refusal:
            result["refusal"] = self.refusal
        return result


class Records:
    """The update rows and installed versions in an agent's state file."""

    def __init__(self, state: AgentState) -> None:
        self.state = state

    def get(self, command_id: str) -> Record | None:
        rows = self.state.select(
            "read an update record", f"SELECT {_COLUMNS} FROM updates WHERE command_id = ?", (command_id,)
        )
        return _record(rows[0]) if rows else None

    def unended(self) -> list[Record]:
        """The updates a stopped agent left unfinished, oldest first."""
        placeholders = ", ".join("?" for _ in ENDED)
        rows = self.state.select(
            "read the unfinished updates",
            f"SELECT {_COLUMNS} FROM updates WHERE state NOT IN ({placeholders}) ORDER BY updated_at",
            tuple(str(s) for s in ENDED),
        )
        return [_record(row) for row in rows]

    def installed(self) -> dict[str, str]:
        """The last committed version of every artifact name (the "software" the agent reports)."""
        rows = self.state.select("read the installed versions", "SELECT name, version FROM installed ORDER BY name")
        return {name: version for name, version in rows}

    def installed_version(self, name: str) -> str | None:
        """The anti-rollback counter of `name`: its last committed version, None when never installed."""
        return self.installed().get(name)

    async def begin(self, command_id: str, name: str, version: str) -> Record:
        """The record of this command's update: a new one in downloading, or the one already there."""
        record = Record(
            command_id=command_id,
            name=name,
            version=version,
            previous=self.installed_version(name),
            state=UpdateState.DOWNLOADING,
        )
        stamp = utc_now().timestamp()

        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                f"INSERT INTO updates ({_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (command_id) DO NOTHING",
                (*_values(record), stamp),
            )

        await self.state.awrite(f"record update {command_id!r}", insert)
        stored = self.get(command_id)
        assert stored is not None
        return stored

    async def move(self, record: Record, state: UpdateState, **changes: Any) -> Record:
        """Write the record's next step (and `prepared`, `reason`, `refusal` when given); returns it."""
        moved = msgspec.structs.replace(record, state=state, **changes)
        await self.state.awrite(f"move update {record.command_id!r} to {state}", _update(moved))
        return moved

    async def commit(self, record: Record) -> Record:
        """Mark the update committed AND make its version the installed one, in one transaction."""
        committed = msgspec.structs.replace(record, state=UpdateState.COMMITTED, reason="")
        stamp = utc_now().timestamp()
        write = _update(committed)

        def body(db: sqlite3.Connection) -> None:
            write(db)
            db.execute(
                "INSERT INTO installed (name, version, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
                (record.name, record.version, stamp),
            )

        await self.state.awrite(f"commit update {record.command_id!r}", body)
        return committed


def _update(record: Record) -> Any:
    values, stamp = _values(record), utc_now().timestamp()

    def body(db: sqlite3.Connection) -> None:
        db.execute(
            "UPDATE updates SET state = ?, prepared = ?, reason = ?, refusal = ?, updated_at = ? WHERE command_id = ?",
            (values[4], values[5], values[6], values[7], stamp, record.command_id),
        )

    return body


def _values(record: Record) -> tuple[Any, ...]:
    return (
        record.command_id,
        record.name,
        record.version,
        record.previous,
        str(record.state),
        msgspec.json.encode(record.prepared),
        record.reason,
        record.refusal,
    )


def _record(row: Any) -> Record:
    return Record(
        command_id=row[0],
        name=row[1],
        version=row[2],
        previous=row[3],
        state=UpdateState(row[4]),
        prepared=msgspec.json.decode(row[5]),
        reason=row[6],
        refusal=row[7],
    )
