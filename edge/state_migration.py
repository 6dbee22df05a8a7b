"""Moving an older agent's SQLite state file into the LMDB one, once, at the agent's first start after an upgrade.

Agents before ADR 0004's LMDB state kept the same tables in SQLite (`agent-state.sqlite`,
schema 1 or 2). Everything in them is carried over: the ledger (a command finished before
the upgrade must not run again after it), the unsent outbox (with its ids, so their order
and the next id hold), the config values, the update records and installed versions.

Crash-safe in its order: the new file is written whole under a temporary name and synced,
then renamed into place (one atomic step), and only then is the old file renamed aside, to
`<name>.sqlite.migrated`, kept for the operator to delete. A crash before the rename leaves
the old file as it was and the migration runs again; after it, the new file is the state.

Imported only when an old file is found, so a device that never had one never loads sqlite3.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import lmdb
import msgspec

from core.updates.states import UpdateState
from edge.errors import StateError
from edge.state import (
    Tables,
    open_environment,
    outbox_value,
    put_last_outbox_id,
    put_ledger_entry,
    put_outbox_entry,
    tables_of,
)
from edge.updates.installers.archive import sync_dir
from edge.updates.record import Record, stored_installed, stored_update


def migrate(legacy: Path, target: Path) -> None:
    """Write `legacy`'s tables into a new LMDB file at `target`, then rename `legacy` aside.

    StateError when the old file cannot be read (not SQLite, damaged): nothing is changed then.
    """
    try:
        _migrate(legacy, target)
    except sqlite3.Error as exc:
        raise StateError(
            f"could not carry over the older agent's state file {legacy}: {exc}; move it away "
            "to start with an empty state (its unsent events and command ledger are then lost)"
        ) from exc


def _migrate(legacy: Path, target: Path) -> None:
    staging = target.with_name(target.name + ".migrating")
    for leftover in (staging, Path(f"{staging}-lock")):  # of a migration that crashed half-way
        leftover.unlink(missing_ok=True)
    # Read-write: closing the last connection checkpoints the old file's WAL into it and deletes it.
    db = sqlite3.connect(legacy)
    try:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        env = open_environment(staging)
        try:
            into = tables_of(env)
            with env.begin(write=True) as txn:
                _copy(db, tables, txn, into)
            env.sync(True)
        finally:
            env.close()
    finally:
        db.close()
    os.replace(staging, target)
    Path(f"{staging}-lock").unlink(missing_ok=True)
    sync_dir(target.parent)
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{legacy}{suffix}")
        if old.exists():
            os.replace(old, Path(f"{legacy}.migrated{suffix}"))
    sync_dir(target.parent)


def _copy(db: sqlite3.Connection, tables: set[str], txn: lmdb.Transaction, into: Tables) -> None:
    for command_id, state, updated_at in db.execute("SELECT command_id, state, updated_at FROM ledger"):
        put_ledger_entry(txn, into, command_id, "finished" if state == "finished" else "started", updated_at)
    for outbox_id, event_id, subject, payload in db.execute(
        "SELECT id, event_id, subject, payload FROM outbox ORDER BY id"
    ):
        put_outbox_entry(txn, into, outbox_id, event_id.encode(), outbox_value(event_id, subject, bytes(payload)))
    last = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    if last is not None:  # AUTOINCREMENT's counter: ids of sent events are not given again either
        put_last_outbox_id(txn, into, int(last[0]))
    for key, value in db.execute("SELECT key, value FROM config"):
        txn.put(key.encode(), bytes(value), db=into.config)
    if "updates" in tables:  # schema 2
        for row in db.execute(
            "SELECT command_id, name, version, previous, state, prepared, reason, refusal, updated_at FROM updates"
        ):
            record = Record(
                command_id=row[0],
                name=row[1],
                version=row[2],
                previous=row[3],
                state=UpdateState(row[4]),
                prepared=msgspec.json.decode(row[5]),
                reason=row[6],
                refusal=row[7],
            )
            txn.put(row[0].encode(), stored_update(record, row[8]), db=into.updates)
    if "installed" in tables:
        for name, version, updated_at in db.execute("SELECT name, version, updated_at FROM installed"):
            txn.put(name.encode(), stored_installed(version, updated_at), db=into.installed)
