"""The update record's tables: added to a state file an older agent wrote, kept across a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core.updates.states import UpdateState
from edge.state import SCHEMA_VERSION, AgentState
from edge.updates.record import Records

SCHEMA_1 = """
CREATE TABLE ledger (command_id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL,
                     payload BLOB NOT NULL);
CREATE TABLE config (key TEXT PRIMARY KEY, value BLOB NOT NULL);
INSERT INTO ledger VALUES ('c-old', 'finished', 1.0);
PRAGMA user_version = 1;
"""


def test_a_state_file_of_schema_1_gains_the_update_tables_and_keeps_its_ledger(tmp_path: Path) -> None:
    path = tmp_path / "agent-state.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_1)
    db.close()

    with AgentState(path) as state:
        assert state.ledger_state("c-old") == "finished"
        assert Records(state).installed() == {} and Records(state).unended() == []

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    db.close()


async def test_a_record_and_the_installed_versions_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "agent-state.sqlite"
    with AgentState(path) as state:
        records = Records(state)
        record = await records.begin("c-1", "app", "1.0")
        assert await records.begin("c-1", "app", "9.9") == record  # the command's record, not a new one
        record = await records.move(record, UpdateState.COMMITTING, prepared={"slot": "b", "previous_slot": "a"})
        await records.commit(record)
        await records.move(await records.begin("c-2", "app", "2.0"), UpdateState.REBOOTING, prepared={"slot": "a"})

    with AgentState(path) as state:
        records = Records(state)
        assert records.installed() == {"app": "1.0"}
        committed = records.get("c-1")
        assert committed is not None and committed.state == UpdateState.COMMITTED
        assert committed.prepared == {"slot": "b", "previous_slot": "a"}
        [open_one] = records.unended()
        assert (open_one.command_id, open_one.state, open_one.previous) == ("c-2", UpdateState.REBOOTING, "1.0")
