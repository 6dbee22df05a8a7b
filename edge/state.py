"""The agent's durable state: one SQLite file with the command ledger, the outbox and config values.

    ledger   command_id -> started | finished       a command runs at most once
    outbox   id, event_id, subject, payload          events waiting to be sent, oldest first
    config   key -> JSON value                        what config.set stored

Exactly-once in effect rests on one transaction: `finish()` marks a command finished
AND appends its outcome events to the outbox together, so after any crash either both
happened (the redelivered command is skipped, the events are still sent) or neither
did (the command is seen as started and reported interrupted). The sender publishes
outbox items with `event_id` as `Nats-Msg-Id`, so a resend after a crash between
publish and `mark_sent()` is dropped by the stream's duplicate window.

The file is in WAL mode with synchronous=FULL (a commit is on disk when it returns)
and readable by its owner only (0600). Calls are short and blocking; they may be
made from the event loop or from `asyncio.to_thread` (a lock serialises them).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

from core.events import Event, encode
from core.events.base import utc_now
from edge.errors import StateError

LedgerState = Literal["new", "started", "finished"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    command_id  TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('started', 'finished')),
    updated_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_finished ON ledger (updated_at) WHERE state = 'finished';
CREATE TABLE IF NOT EXISTS outbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id  TEXT NOT NULL UNIQUE,
    subject   TEXT NOT NULL,
    payload   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS config (
    key    TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);
"""


class OutboxItem(msgspec.Struct, frozen=True, kw_only=True):
    """One event to send: publish `payload` on `subject` with `event_id` as Nats-Msg-Id, then mark_sent(id)."""

    id: int
    event_id: str
    subject: str
    payload: bytes


class AgentState:
    """The ledger, the outbox and the config values in one SQLite file; StateError on any failure."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        with _translate(f"open the state file {self.path}"):
            _create_private(self.path)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            with _translate(f"prepare the state file {self.path}"):
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise StateError(f"{self.path} cannot use WAL mode (got {mode!r}); put it on a local disk")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.execute("PRAGMA busy_timeout=5000")
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StateError(
                        f"{self.path} was written by a newer agent (schema {version}, this one knows "
                        f"{SCHEMA_VERSION}); upgrade the agent or move the file away"
                    )
                self._db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        except BaseException:
            self._db.close()
            raise

    # -- Lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AgentState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- The ledger -----------------------------------------------------------------------

    def ledger_state(self, command_id: str) -> LedgerState:
        """The command's state: new (never seen), started (admitted, no outcome recorded) or finished."""
        with self._lock, _translate("read the command ledger"):
            row = self._db.execute("SELECT state FROM ledger WHERE command_id = ?", (command_id,)).fetchone()
        if row is None:
            return "new"
        return "finished" if row[0] == "finished" else "started"

    def mark_started(self, command_id: str, events: Iterable[Event] = (), *, now: datetime | None = None) -> None:
        """Record that `command_id` starts, and queue `events` (Accepted, Running), in one transaction.

        StateError when the command is already in the ledger: it must never start twice.
        """
        rows = _rows(events)
        with self._transaction(f"mark command {command_id!r} started") as db:
            if db.execute("SELECT 1 FROM ledger WHERE command_id = ?", (command_id,)).fetchone():
                raise StateError(f"command {command_id!r} is already in the ledger; check ledger_state() first")
            db.execute(
                "INSERT INTO ledger (command_id, state, updated_at) VALUES (?, 'started', ?)",
                (command_id, _stamp(now)),
            )
            _append(db, rows)

    def finish(self, command_id: str, events: Iterable[Event], *, now: datetime | None = None) -> None:
        """Mark `command_id` finished AND queue its outcome `events`, in one transaction.

        Works for a started command and for one never started (rejected, expired).
        StateError when it is already finished: its outcome was recorded once already.
        """
        rows = _rows(events)
        with self._transaction(f"finish command {command_id!r}") as db:
            row = db.execute("SELECT state FROM ledger WHERE command_id = ?", (command_id,)).fetchone()
            if row is not None and row[0] == "finished":
                raise StateError(f"command {command_id!r} is already finished; its outcome is recorded once")
            db.execute(
                "INSERT INTO ledger (command_id, state, updated_at) VALUES (?, 'finished', ?) "
                "ON CONFLICT (command_id) DO UPDATE SET state = 'finished', updated_at = excluded.updated_at",
                (command_id, _stamp(now)),
            )
            _append(db, rows)

    def prune(self, older_than: datetime) -> int:
        """Forget finished commands finished before `older_than`; returns how many.

        Deduplication only needs the commands the stream can still redeliver, so a
        cutoff of now minus the command stream's max age keeps the ledger bounded.
        Started-but-unfinished entries are kept: they still need their interrupted report.
        """
        with self._transaction("prune the command ledger") as db:
            cursor = db.execute(
                "DELETE FROM ledger WHERE state = 'finished' AND updated_at < ?", (older_than.timestamp(),)
            )
            return cursor.rowcount

    # -- The outbox -----------------------------------------------------------------------

    def enqueue(self, events: Iterable[Event]) -> None:
        """Queue events that belong to no command (telemetry, heartbeats), in one transaction."""
        rows = _rows(events)
        with self._transaction("queue events") as db:
            _append(db, rows)

    def pending(self, limit: int = 100) -> list[OutboxItem]:
        """Up to `limit` unsent events, oldest first."""
        with self._lock, _translate("read the outbox"):
            rows = self._db.execute(
                "SELECT id, event_id, subject, payload FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [OutboxItem(id=r[0], event_id=r[1], subject=r[2], payload=bytes(r[3])) for r in rows]

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Drop the given outbox items: the server acknowledged them."""
        with self._transaction("mark events sent") as db:
            db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def outbox_size(self) -> int:
        with self._lock, _translate("count the outbox"):
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    # -- Config values --------------------------------------------------------------------

    def config_get(self, key: str) -> Any:
        """The value stored under `key`; KeyError when there is none."""
        with self._lock, _translate("read a config value"):
            row = self._db.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return msgspec.json.decode(row[0])

    def config_items(self) -> dict[str, Any]:
        with self._lock, _translate("read the config values"):
            rows = self._db.execute("SELECT key, value FROM config ORDER BY key").fetchall()
        return {key: msgspec.json.decode(value) for key, value in rows}

    def config_set(self, key: str, value: Any) -> None:
        """Store a JSON-able `value` under `key`, replacing any earlier one."""
        payload = msgspec.json.encode(value)
        with self._transaction("store a config value") as db:
            db.execute(
                "INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, payload),
            )

    # -- Plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error; sqlite3 errors become StateError."""
        with self._lock, _translate(what):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                    self._db.execute("ROLLBACK")
                raise


_Row = tuple[str, str, bytes]


def _rows(events: Iterable[Event]) -> list[_Row]:
    """Encode before the transaction starts, so a bad event never holds the write lock."""
    return [(event.event_id, event.subject(), encode(event)) for event in events]


def _append(db: sqlite3.Connection, rows: list[_Row]) -> None:
    db.executemany("INSERT INTO outbox (event_id, subject, payload) VALUES (?, ?, ?)", rows)


def _stamp(now: datetime | None) -> float:
    return (now or utc_now()).timestamp()


def _create_private(path: Path) -> None:
    """Create the file readable by its owner only (or tighten an existing one) before SQLite opens it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """The one place where sqlite3 and OS errors become StateError."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise StateError(f"could not {what}: {exc} (an event queued twice?); this is a bug, report it") from exc
    except sqlite3.Error as exc:
        raise StateError(f"could not {what}: {exc}; check the disk and the state file's permissions") from exc
    except OSError as exc:
        raise StateError(f"could not {what}: {exc.strerror or exc}; check the folder exists and is writable") from exc
