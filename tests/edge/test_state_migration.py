"""edge.state_migration: an older agent's SQLite state file is carried into the LMDB one, once, whole."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from core.events import CommandSucceeded, TelemetryReported, decode, encode
from core.updates.states import UpdateState
from edge.errors import StateError
from edge.state import AgentState
from edge.updates.record import Records
from tests.edge.samples import DEVICE

# What agents before the LMDB state wrote (edge/state.py's schema 2, as it was).
SCHEMA_2 = """
CREATE TABLE ledger (command_id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL,
                     payload BLOB NOT NULL);
CREATE TABLE config (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE updates (command_id TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL, previous TEXT,
                      state TEXT NOT NULL, prepared BLOB NOT NULL, reason TEXT NOT NULL, refusal TEXT,
                      updated_at REAL NOT NULL);
CREATE TABLE installed (name TEXT PRIMARY KEY, version TEXT NOT NULL, updated_at REAL NOT NULL);
PRAGMA user_version = 2;
"""
SCHEMA_1 = SCHEMA_2.split("CREATE TABLE updates")[0] + "PRAGMA user_version = 1;"


def older_agents_file(path: Path, schema: str, *, sent: int = 0) -> list[TelemetryReported]:
    """A state file as an older agent left it: two commands, `sent` events sent and gone, two waiting."""
    waiting = [TelemetryReported(device_id=DEVICE, metrics={"temp": float(i)}, actor=DEVICE) for i in range(2)]
    with sqlite3.connect(path) as db:
        db.executescript(schema)
        db.execute("PRAGMA journal_mode=WAL")
        db.executemany(
            "INSERT INTO ledger VALUES (?, ?, ?)", [("c-done", "finished", 1000.0), ("c-running", "started", 2000.0)]
        )
        db.executemany(
            "INSERT INTO outbox (event_id, subject, payload) VALUES (?, ?, ?)",
            [(f"sent-{i}", "s", b"x") for i in range(sent)] + [(e.event_id, e.subject(), encode(e)) for e in waiting],
        )
        db.execute("DELETE FROM outbox WHERE event_id LIKE 'sent-%'")
        db.execute("INSERT INTO config VALUES ('rate', ?)", (msgspec.json.encode({"hz": 5}),))
        if "updates" in schema:
            db.execute(
                "INSERT INTO updates VALUES ('u-1', 'app', '2.0', '1.0', 'rebooting', ?, '', NULL, 3000.0)",
                (msgspec.json.encode({"slot": "b"}),),
            )
            db.execute("INSERT INTO installed VALUES ('app', '1.0', 900.0)")
    db.close()
    return waiting


def test_an_older_agents_file_is_carried_over_whole_and_moved_aside(tmp_path: Path) -> None:
    legacy = tmp_path / "agent-state.sqlite"
    waiting = older_agents_file(legacy, SCHEMA_2, sent=3)

    with AgentState(legacy) as state:  # an agent.toml of then names the .sqlite file
        assert state.path == tmp_path / "agent-state.lmdb"
        assert state.ledger_state("c-done") == "finished"
        assert state.ledger_state("c-running") == "started"
        items = state.pending()
        assert [decode(item.payload) for item in items] == waiting
        assert [item.id for item in items] == [4, 5]  # their ids, in their order
        assert state.config_get("rate") == {"hz": 5}
        records = Records(state)
        assert records.installed() == {"app": "1.0"}
        [update] = records.unended()
        assert (update.command_id, update.state, update.prepared) == ("u-1", UpdateState.REBOOTING, {"slot": "b"})
        state.finish("c-new", [CommandSucceeded(command_id="c-new", device_id=DEVICE, actor=DEVICE)])
        assert state.pending()[-1].id == 6  # after the last id the old file gave

    assert not legacy.exists()
    assert (tmp_path / "agent-state.sqlite.migrated").exists()  # kept for the operator
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "agent-state.lmdb",
        "agent-state.lmdb-lock",
        "agent-state.sqlite.migrated",
    ]


def test_the_move_happens_once_and_a_file_of_schema_1_has_no_update_records(tmp_path: Path) -> None:
    older_agents_file(tmp_path / "agent-state.sqlite", SCHEMA_1)

    with AgentState(tmp_path / "agent-state.lmdb") as state:  # a new agent.toml: the same file found beside it
        assert state.ledger_state("c-done") == "finished"
        assert Records(state).installed() == {} and Records(state).unended() == []
        assert state.prune(datetime.fromtimestamp(1500.0, UTC)) == 1  # finished at 1000: its age came along
        assert state.ledger_state("c-done") == "new"

    older_agents_file(tmp_path / "agent-state.sqlite", SCHEMA_1)  # came back somehow: not read again
    with AgentState(tmp_path / "agent-state.lmdb") as state:
        assert state.ledger_state("c-done") == "new"


def test_an_older_file_that_is_not_sqlite_is_a_clear_error_and_stays_as_it_was(tmp_path: Path) -> None:
    legacy = tmp_path / "agent-state.sqlite"
    legacy.write_bytes(b"not a database, just bytes" * 100)

    with pytest.raises(StateError) as caught:
        AgentState(legacy)

    assert str(caught.value).startswith(f"could not carry over the older agent's state file {legacy}: ")
    assert "move it away to start with an empty state" in str(caught.value)
    assert legacy.read_bytes() == b"not a database, just bytes" * 100
    assert not (tmp_path / "agent-state.lmdb").exists()
