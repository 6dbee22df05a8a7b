"""The agent's durable state: one SQLite file with the command ledger, the outbox and config values.

    ledger   command_id -> started | finished       a command runs at most once
    outbox   id, event_id, subject, payload          events waiting to be sent, oldest first
    config   key -> JSON value                        what config.set stored
    updates  command_id -> an update's step and result   edge.updates.record (schema 2)
    installed  artifact name -> version                  the last committed version of each

Exactly-once in effect rests on one transaction: `finish()` marks a command finished
AND appends its outcome events to the outbox together, so after any crash either both
happened (the redelivered command is skipped, the events are still sent) or neither
did (the command is seen as started and reported interrupted). The sender publishes
outbox items with `event_id` as `Nats-Msg-Id`, so a resend after a crash between
publish and `mark_sent()` is dropped by the stream's duplicate window.

The agent does not wait for a write to forget what it sent: `note_sent()` only moves a
mark in memory (what `pending()` returns starts after it), and the rows go with the next
write the agent makes anyway (`amark_started`, `afinish`, `aenqueue`), or with
`aforget_sent()` once the outbox has been idle a while, or at `close()`. A command so costs
two transactions (started, finished) instead of four. A crash before the rows went costs
their resend, which the stream drops as above.

The file is in WAL mode with synchronous=FULL (a commit is on disk when it returns)
and readable by its owner only (0600). Every write has two forms:
- `mark_started`, `finish`, `enqueue`, `mark_sent`, `config_set`, `prune` block until
  their transaction is on disk (for handlers, tools and tests);
- `amark_started`, `afinish`, `aenqueue`, `aforget_sent` (what the agent uses) return once
  their write is on disk too, but wait off the event loop: a writer thread of the state's
  own runs the writes of all waiting callers in one transaction, one fsync for the lot
  (edge.group_commit). Awaiting one means what the blocking call returning means.
Reads go through a second, read-only connection, so a read on the event loop never waits
behind a COMMIT's fsync in the writer thread; it sees every write whose call has returned.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import msgspec

from core.events import Event, encode
from core.events.base import utc_now
from edge.errors import StateError
from edge.group_commit import GroupCommit

LedgerState = Literal["new", "started", "finished"]

# 2 added updates and installed (edge.updates.record); CREATE ... IF NOT EXISTS migrates a 1.
SCHEMA_VERSION = 2
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
CREATE TABLE IF NOT EXISTS updates (
    command_id  TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    previous    TEXT,
    state       TEXT NOT NULL,
    prepared    BLOB NOT NULL,
    reason      TEXT NOT NULL,
    refusal     TEXT,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS installed (
    name        TEXT PRIMARY KEY,
    version     TEXT NOT NULL,
    updated_at  REAL NOT NULL
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
                self._reader = _open_reader(self.path)
        except BaseException:
            self._db.close()
            raise
        self._read_lock = threading.Lock()
        self._writer = GroupCommit(self._db, self._lock, name=f"state {self.path.name}", translate=_translate)
        # Outbox ids up to _sent_through were acknowledged by the server (note_sent); rows up to
        # _forgotten_through are deleted from the file. Only the event loop's thread moves either.
        self._sent_through = 0
        self._forgotten_through = 0

    @property
    def writer(self) -> GroupCommit:
        """The group commit behind the a-methods (its `commits` and `writes` counts show how well it groups)."""
        return self._writer

    # -- Lifetime -------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the writes already submitted, forget what was sent, then close the file."""
        self._writer.close()
        if self.sent_unforgotten():
            with contextlib.suppress(StateError):  # they are resent at the next start, and dropped by the stream
                self._now(*_forgotten(self._sent_through, _nothing))
        with self._read_lock:
            self._reader.close()
        with self._lock:
            self._db.close()

    def __enter__(self) -> AgentState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- The ledger -----------------------------------------------------------------------

    def ledger_state(self, command_id: str) -> LedgerState:
        """The command's state: new (never seen), started (admitted, no outcome recorded) or finished."""
        rows = self._read("read the command ledger", "SELECT state FROM ledger WHERE command_id = ?", (command_id,))
        if not rows:
            return "new"
        return "finished" if rows[0][0] == "finished" else "started"

    def mark_started(self, command_id: str, events: Iterable[Event] = (), *, now: datetime | None = None) -> None:
        """Record that `command_id` starts, and queue `events` (Accepted, Running), in one transaction.

        StateError when the command is already in the ledger: it must never start twice.
        """
        self._now(*_started(command_id, events, now))

    async def amark_started(
        self, command_id: str, events: Iterable[Event] = (), *, now: datetime | None = None
    ) -> None:
        """mark_started, waited for off the event loop; on disk when it returns."""
        await self._submit(_started(command_id, events, now))

    def finish(self, command_id: str, events: Iterable[Event], *, now: datetime | None = None) -> None:
        """Mark `command_id` finished AND queue its outcome `events`, in one transaction.

        Works for a started command and for one never started (rejected, expired).
        StateError when it is already finished: its outcome was recorded once already.
        """
        self._now(*_finished(command_id, events, now))

    async def afinish(self, command_id: str, events: Iterable[Event], *, now: datetime | None = None) -> None:
        """finish, waited for off the event loop; on disk when it returns."""
        await self._submit(_finished(command_id, events, now))

    def prune(self, older_than: datetime) -> int:
        """Forget finished commands finished before `older_than`; returns how many.

        Deduplication only needs the commands the stream can still redeliver, so a
        cutoff of now minus the command stream's max age keeps the ledger bounded.
        Started-but-unfinished entries are kept: they still need their interrupted report.
        """
        cutoff = older_than.timestamp()

        def prune(db: sqlite3.Connection) -> int:
            cursor = db.execute("DELETE FROM ledger WHERE state = 'finished' AND updated_at < ?", (cutoff,))
            return cursor.rowcount

        return int(self._now("prune the command ledger", prune))

    # -- The outbox -----------------------------------------------------------------------

    def enqueue(self, events: Iterable[Event]) -> None:
        """Queue events that belong to no command (telemetry, heartbeats), in one transaction."""
        self._now(*_queued(events))

    async def aenqueue(self, events: Iterable[Event]) -> None:
        """enqueue, waited for off the event loop; on disk when it returns."""
        await self._submit(_queued(events))

    def pending(self, limit: int = 100) -> list[OutboxItem]:
        """Up to `limit` unsent events, oldest first (after those `note_sent` was told of)."""
        rows = self._read(
            "read the outbox",
            "SELECT id, event_id, subject, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (self._sent_through, limit),
        )
        return [OutboxItem(id=r[0], event_id=r[1], subject=r[2], payload=bytes(r[3])) for r in rows]

    def note_sent(self, items: Sequence[OutboxItem]) -> None:
        """The server acknowledged `items`, the oldest of `pending()` in its order: skip them from now on.

        Nothing is written now; see the module docstring for when their rows go.
        """
        if items:
            self._sent_through = max(self._sent_through, items[-1].id)

    def sent_unforgotten(self) -> bool:
        """Whether rows of sent events are still in the file (aforget_sent would delete them)."""
        return self._sent_through > self._forgotten_through

    async def aforget_sent(self) -> None:
        """Delete the rows of every event noted sent, in a transaction of its own; on disk when it returns."""
        if self.sent_unforgotten():
            await self._submit(("forget sent events", _nothing))

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Drop the given outbox items: the server acknowledged them."""
        self._now(*_sent(ids))

    def outbox_size(self) -> int:
        """How many events wait to be sent (not those sent whose rows are still to go)."""
        return int(
            self._read("count the outbox", "SELECT count(*) FROM outbox WHERE id > ?", (self._sent_through,))[0][0]
        )

    # -- Config values --------------------------------------------------------------------

    def config_get(self, key: str) -> Any:
        """The value stored under `key`; KeyError when there is none."""
        rows = self._read("read a config value", "SELECT value FROM config WHERE key = ?", (key,))
        if not rows:
            raise KeyError(key)
        return msgspec.json.decode(rows[0][0])

    def config_items(self) -> dict[str, Any]:
        rows = self._read("read the config values", "SELECT key, value FROM config ORDER BY key")
        return {key: msgspec.json.decode(value) for key, value in rows}

    def config_set(self, key: str, value: Any) -> None:
        """Store a JSON-able `value` under `key`, replacing any earlier one."""
        payload = msgspec.json.encode(value)

        def store(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, payload),
            )

        self._now("store a config value", store)

    # -- Tables of other modules (edge.updates.record) --------------------------------------

    async def awrite(self, what: str, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `body(db)` in a write transaction off the event loop; on disk when it returns."""
        return await self._writer.submit(what, body)

    def select(self, what: str, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """All rows of one read-only query."""
        return self._read(what, sql, parameters)

    # -- Plumbing -------------------------------------------------------------------------

    async def _submit(self, write: _Write) -> None:
        """Submit a write to the group commit, deleting the rows of the events sent since the last one with it."""
        through = self._sent_through
        if through > self._forgotten_through:
            write = _forgotten(through, write[1], what=write[0])
        await self._writer.submit(*write)
        self._forgotten_through = max(self._forgotten_through, through)

    def _now(self, what: str, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run a write's body in a transaction of its own, in this thread; on disk when it returns."""
        with self._transaction(what) as db:
            return body(db)

    def _read(self, what: str, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """All rows of one query on the read-only connection.

        fetchall() runs the statement to its end, which ends its read transaction: a
        statement left half-read would keep its snapshot, hide later writes from this
        connection and hold back the WAL's checkpoints.
        """
        with self._read_lock, _translate(what):
            return self._reader.execute(sql, parameters).fetchall()

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
_Write = tuple[str, Callable[[sqlite3.Connection], None]]


# -- The writes: what each names itself in errors, and its body ------------------------------
# Events are encoded here, before the transaction starts, so a bad event never holds the write lock.
# Each body is as few statements as it can be: in the writer thread, each one waits for the GIL.


def _started(command_id: str, events: Iterable[Event], now: datetime | None) -> _Write:
    rows, stamp = _rows(events), _stamp(now)

    def body(db: sqlite3.Connection) -> None:
        try:
            db.execute(
                "INSERT INTO ledger (command_id, state, updated_at) VALUES (?, 'started', ?)", (command_id, stamp)
            )
        except sqlite3.IntegrityError:  # the primary key: it is there already
            raise StateError(f"command {command_id!r} is already in the ledger; check ledger_state() first") from None
        _append(db, rows)

    return f"mark command {command_id!r} started", body


def _finished(command_id: str, events: Iterable[Event], now: datetime | None) -> _Write:
    rows, stamp = _rows(events), _stamp(now)

    def body(db: sqlite3.Connection) -> None:
        marked = db.execute(
            "INSERT INTO ledger (command_id, state, updated_at) VALUES (?, 'finished', ?) "
            "ON CONFLICT (command_id) DO UPDATE SET state = 'finished', updated_at = excluded.updated_at "
            "WHERE ledger.state != 'finished'",
            (command_id, stamp),
        )
        if marked.rowcount == 0:  # the conflict's update did not apply: finished already
            raise StateError(f"command {command_id!r} is already finished; its outcome is recorded once")
        _append(db, rows)

    return f"finish command {command_id!r}", body


def _queued(events: Iterable[Event]) -> _Write:
    rows = _rows(events)
    return "queue events", lambda db: _append(db, rows)


def _sent(ids: Sequence[int]) -> _Write:
    parameters = [(i,) for i in ids]

    def body(db: sqlite3.Connection) -> None:
        db.executemany("DELETE FROM outbox WHERE id = ?", parameters)

    return "mark events sent", body


def _forgotten(through: int, body: Callable[[sqlite3.Connection], None], *, what: str = "forget sent events") -> _Write:
    """`body`, after deleting the outbox rows up to `through` (sent events) in the same transaction."""

    def forget_then(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM outbox WHERE id <= ?", (through,))
        body(db)

    return what, forget_then


def _nothing(db: sqlite3.Connection) -> None:
    pass


def _rows(events: Iterable[Event]) -> list[_Row]:
    return [(event.event_id, event.subject(), encode(event)) for event in events]


def _append(db: sqlite3.Connection, rows: list[_Row]) -> None:
    db.executemany("INSERT INTO outbox (event_id, subject, payload) VALUES (?, ?, ?)", rows)


def _stamp(now: datetime | None) -> float:
    return (now or utc_now()).timestamp()


def _open_reader(path: Path) -> sqlite3.Connection:
    """A second connection for reads only: in WAL mode it reads while the writer thread commits."""
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        reader.execute("PRAGMA query_only=ON")  # a write through it would bypass the group commit
        reader.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        reader.close()
        raise
    return reader


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
