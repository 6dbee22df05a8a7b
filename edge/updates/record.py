"""The update record: which update is at which step, and which version of each artifact is installed.

Both live in the agent's state file (edge.state, tables `updates` and `installed`) rather
than a file of their own, because that file already is what the agent trusts after a
crash: its writes are fsynced transactions, and "committed" and "installed version" must
change together, in one of them. An entry in `updates` per update.install command:

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

from typing import Any

import lmdb
import msgspec

from core.events.base import utc_now
from core.updates.states import ENDED, UpdateState
from edge.state import AgentState

SWITCHED = frozenset({UpdateState.REBOOTING, UpdateState.COMMITTING})  # the new version may be active


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
    """The update entries and installed versions in an agent's state file."""

    def __init__(self, state: AgentState) -> None:
        self.state = state
        self._updates = state.tables.updates
        self._installed = state.tables.installed

    def get(self, command_id: str) -> Record | None:
        stored = self.state.read("read an update record", lambda txn: txn.get(command_id.encode(), db=self._updates))
        return _UPDATE.decode(stored)[0] if stored is not None else None

    def unended(self) -> list[Record]:
        """The updates a stopped agent left unfinished, oldest first."""

        def scan(txn: lmdb.Transaction) -> list[tuple[Record, float]]:
            return [_UPDATE.decode(value) for value in txn.cursor(db=self._updates).iternext(keys=False)]

        stored = self.state.read("read the unfinished updates", scan)
        return [record for record, _ in sorted(stored, key=lambda entry: entry[1]) if not record.ended]

    def installed(self) -> dict[str, str]:
        """The last committed version of every artifact name (the "software" the agent reports)."""

        def scan(txn: lmdb.Transaction) -> dict[str, str]:
            return {bytes(name).decode(): _INSTALLED.decode(value)[0] for name, value in txn.cursor(db=self._installed)}

        return self.state.read("read the installed versions", scan)

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
        value = stored_update(record, utc_now().timestamp())
        await self.state.awrite(
            f"record update {command_id!r}",
            lambda txn: txn.put(command_id.encode(), value, overwrite=False, db=self._updates),
        )
        stored = self.get(command_id)
        assert stored is not None
        return stored

    async def move(self, record: Record, state: UpdateState, **changes: Any) -> Record:
        """Write the record's next step (and `prepared`, `reason`, `refusal` when given); returns it."""
        moved = msgspec.structs.replace(record, state=state, **changes)
        value = stored_update(moved, utc_now().timestamp())
        await self.state.awrite(
            f"move update {record.command_id!r} to {state}",
            lambda txn: txn.put(record.command_id.encode(), value, db=self._updates),
        )
        return moved

    async def commit(self, record: Record) -> Record:
        """Mark the update committed AND make its version the installed one, in one transaction."""
        committed = msgspec.structs.replace(record, state=UpdateState.COMMITTED, reason="")
        stamp = utc_now().timestamp()
        value, installed = stored_update(committed, stamp), stored_installed(record.version, stamp)

        def body(txn: lmdb.Transaction) -> None:
            txn.put(record.command_id.encode(), value, db=self._updates)
            txn.put(record.name.encode(), installed, db=self._installed)

        await self.state.awrite(f"commit update {record.command_id!r}", body)
        return committed


# -- How the entries are stored (edge.state_migration writes them too) -------------------------

_UPDATE = msgspec.msgpack.Decoder(tuple[Record, float])  # the record, when it last moved
_INSTALLED = msgspec.msgpack.Decoder(tuple[str, float])  # the version, when it was committed


def stored_update(record: Record, stamp: float) -> bytes:
    return msgspec.msgpack.encode((record, stamp))


def stored_installed(version: str, stamp: float) -> bytes:
    return msgspec.msgpack.encode((version, stamp))
