"""The agent's durable state: one LMDB file with the command ledger, the outbox and config values.

    ledger     command_id -> started | finished, when        a command runs at most once
    finished   when + command_id                            the finished ones by age, for prune()
    outbox     id -> event_id, subject, payload             events waiting to be sent, oldest first
    event_ids  event_id -> id                               an event is queued once
    config     key -> JSON value                            what config.set stored
    updates    command_id -> an update's step and result    edge.updates.record
    installed  artifact name -> version                     the last committed version of each
    meta       format, the last outbox id given             outbox ids are never given twice

Exactly-once in effect rests on one transaction: `finish()` marks a command finished
AND appends its outcome events to the outbox together, so after any crash either both
happened (the redelivered command is skipped, the events are still sent) or neither
did (the command is seen as started and reported interrupted). The sender publishes
outbox items with `event_id` as `Nats-Msg-Id`, so a resend after a crash between
publish and `mark_sent()` is dropped by the stream's duplicate window.

The agent does not wait for a write to forget what it sent: `note_sent()` only moves a
mark in memory (what `pending()` returns starts after it), and the entries go with the
next write the agent makes anyway (`amark_started`, `afinish`, `aenqueue`), or with
`aforget_sent()` once the outbox has been idle a while, or at `close()`. A command so costs
two transactions (started, finished) instead of four. A crash before the entries went
costs their resend, which the stream drops as above.

Why LMDB rather than SQLite (ADR 0004): the same fsynced, crash-proof transactions (a
commit is on disk when it returns; a kill -9 or power cut leaves the last commit whole),
for a third of the memory on a device (SQLite's library and page caches were 1.9 MB of a
31.5 MB agent), and reads that are lookups in a memory map, with no statement to prepare.
The file is readable by its owner only (0600). Every write has two forms:
- `mark_started`, `finish`, `enqueue`, `mark_sent`, `config_set`, `prune` block until
  their transaction is on disk (for handlers, tools and tests);
- `amark_started`, `afinish`, `aenqueue`, `aforget_sent` (what the agent uses) return once
  their write is on disk too, but wait off the event loop: a writer thread of the state's
  own runs the writes of all waiting callers in one transaction, one fsync for the lot
  (edge.group_commit). Awaiting one means what the blocking call returning means.
Reads take a read transaction of their own, which never waits for a writer (LMDB keeps
the last committed version readable while the next is written); they see every write
whose call has returned.

A state file kept by an older agent (SQLite, `agent-state.sqlite`) is moved over once, at
the first open (edge.state_migration).
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import lmdb
import msgspec

from core.events import Event, encode
from core.events.base import utc_now
from edge.errors import StateError
from edge.group_commit import GroupCommit

T = TypeVar("T")
LedgerState = Literal["new", "started", "finished"]

FORMAT = 1  # of the LMDB file; a newer agent's higher one is refused, not guessed at
# The most the file may grow to. LMDB maps it whole, so this is address space, not memory
# or disk (the file grows as it fills): a 64-bit device reserves 1 GiB (about two million
# queued events), a 32-bit one, whose address space is 3 GiB in all, a quarter of that.
MAP_SIZE = 1 << 30 if sys.maxsize > 2**32 else 1 << 28
_TABLES = ("ledger", "finished", "outbox", "event_ids", "config", "updates", "installed", "meta")
_STARTED, _FINISHED = b"s", b"f"
_FORMAT_KEY, _LAST_ID_KEY = b"format", b"outbox.last_id"
_STAMP = struct.Struct(">d")  # big-endian: positive timestamps sort as their bytes do
_ID = struct.Struct(">Q")  # outbox ids, likewise
_OutboxValue = tuple[str, str, bytes]  # event_id, subject, payload
_OUTBOX_VALUE = msgspec.msgpack.Decoder(_OutboxValue)


class OutboxItem(msgspec.Struct, frozen=True, kw_only=True):
    """One event to send: publish `payload` on `subject` with `event_id` as Nats-Msg-Id, then mark_sent(id)."""

    id: int
    event_id: str
    subject: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Tables:
    """The file's named tables (LMDB databases), for `txn.get(key, db=tables.updates)` and the like."""

    ledger: Any
    finished: Any
    outbox: Any
    event_ids: Any
    config: Any
    updates: Any
    installed: Any
    meta: Any


def locate(configured: Path) -> tuple[Path, Path]:
    """(The state file, the SQLite file an older agent kept there) for a configured path (pure).

    Agents before LMDB were configured with `agent-state.sqlite`; such a name means the
    `.lmdb` file beside it, so an agent.toml written then keeps its state.
    """
    if configured.suffix == ".sqlite":
        return configured.with_suffix(".lmdb"), configured
    return configured, configured.with_suffix(".sqlite")


def open_environment(path: Path) -> lmdb.Environment:
    """The LMDB file at `path` (made if absent, 0600), with every commit on disk when it returns."""
    env = lmdb.open(
        str(path),
        subdir=False,  # one file (and its -lock beside it), not a folder
        map_size=MAP_SIZE,
        max_dbs=len(_TABLES),
        mode=0o600,
        sync=True,  # fsync at every commit: the ledger's promise
        metasync=True,
        readahead=False,  # the file is small and read by lookups: no pages read ahead into memory
        max_spare_txns=1,
        lock=True,  # another process (a tool, a second agent by mistake) is kept in step
    )
    for file in (path, Path(f"{path}-lock")):
        os.chmod(file, 0o600)  # mode= applies to a new file only: tighten one made before
    return env


def tables_of(env: lmdb.Environment) -> Tables:
    """Open (or create) the named tables in one transaction."""
    with env.begin(write=True) as txn:
        return Tables(**{name: env.open_db(name.encode(), txn=txn) for name in _TABLES})


class AgentState:
    """The ledger, the outbox and the config values in one LMDB file; StateError on any failure."""

    def __init__(self, path: Path) -> None:
        self.path, legacy = locate(Path(path))
        self._lock = threading.Lock()
        with _translate(f"open the state file {self.path}"):
            if not self.path.exists() and legacy.exists():
                from edge.state_migration import migrate  # only an upgraded device pays for sqlite3

                migrate(legacy, self.path)
            self._env = open_environment(self.path)
        try:
            with _translate(f"prepare the state file {self.path}"):
                self.tables = tables_of(self._env)
                self._check_format()
        except BaseException:
            self._env.close()
            raise
        self._writer = GroupCommit(self._env, self._lock, name=f"state {self.path.name}", translate=_translate)
        # Outbox ids up to _sent_through were acknowledged by the server (note_sent); entries up
        # to _forgotten_through are deleted from the file. Only the event loop's thread moves either.
        self._sent_through = 0
        self._forgotten_through = 0

    def _check_format(self) -> None:
        with self._lock, self._env.begin(write=True) as txn:
            stored = txn.get(_FORMAT_KEY, db=self.tables.meta)
            if stored is None:
                txn.put(_FORMAT_KEY, str(FORMAT).encode(), db=self.tables.meta)
            elif int(stored) > FORMAT:
                raise StateError(
                    f"{self.path} was written by a newer agent (format {int(stored)}, this one knows "
                    f"{FORMAT}); upgrade the agent or move the file away"
                )

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
                self._now(*_forgotten(self.tables, self._sent_through, _nothing))
        with self._lock:
            self._env.close()

    def __enter__(self) -> AgentState:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- The ledger -----------------------------------------------------------------------

    def ledger_state(self, command_id: str) -> LedgerState:
        """The command's state: new (never seen), started (admitted, no outcome recorded) or finished."""
        entry = self.read("read the command ledger", lambda txn: txn.get(command_id.encode(), db=self.tables.ledger))
        if entry is None:
            return "new"
        return "finished" if entry[:1] == _FINISHED else "started"

    def mark_started(self, command_id: str, events: Iterable[Event] = (), *, now: datetime | None = None) -> None:
        """Record that `command_id` starts, and queue `events` (Accepted, Running), in one transaction.

        StateError when the command is already in the ledger: it must never start twice.
        """
        self._now(*_started(self.tables, command_id, events, now))

    async def amark_started(
        self, command_id: str, events: Iterable[Event] = (), *, now: datetime | None = None
    ) -> None:
        """mark_started, waited for off the event loop; on disk when it returns."""
        await self._submit(_started(self.tables, command_id, events, now))

    def finish(self, command_id: str, events: Iterable[Event], *, now: datetime | None = None) -> None:
        """Mark `command_id` finished AND queue its outcome `events`, in one transaction.

        Works for a started command and for one never started (rejected, expired).
        StateError when it is already finished: its outcome was recorded once already.
        """
        self._now(*_finished(self.tables, command_id, events, now))

    async def afinish(self, command_id: str, events: Iterable[Event], *, now: datetime | None = None) -> None:
        """finish, waited for off the event loop; on disk when it returns."""
        await self._submit(_finished(self.tables, command_id, events, now))

    def prune(self, older_than: datetime) -> int:
        """Forget finished commands finished before `older_than`; returns how many.

        Deduplication only needs the commands the stream can still redeliver, so a
        cutoff of now minus the command stream's max age keeps the ledger bounded.
        Started-but-unfinished entries are kept: they still need their interrupted report.
        """
        cutoff = _STAMP.pack(older_than.timestamp())
        tables = self.tables

        def prune(txn: lmdb.Transaction) -> int:
            keys = _keys_while(txn.cursor(db=tables.finished), lambda key: key[: _STAMP.size] < cutoff)
            for key in keys:  # when + command_id
                txn.delete(key, db=tables.finished)
                txn.delete(key[_STAMP.size :], db=tables.ledger)
            return len(keys)

        return int(self._now("prune the command ledger", prune))

    # -- The outbox -----------------------------------------------------------------------

    def enqueue(self, events: Iterable[Event]) -> None:
        """Queue events that belong to no command (telemetry, heartbeats), in one transaction."""
        self._now(*_queued(self.tables, events))

    async def aenqueue(self, events: Iterable[Event]) -> None:
        """enqueue, waited for off the event loop; on disk when it returns."""
        await self._submit(_queued(self.tables, events))

    def pending(self, limit: int = 100) -> list[OutboxItem]:
        """Up to `limit` unsent events, oldest first (after those `note_sent` was told of)."""
        start = _ID.pack(self._sent_through + 1)

        def page(txn: lmdb.Transaction) -> list[OutboxItem]:
            cursor = txn.cursor(db=self.tables.outbox)
            items: list[OutboxItem] = []
            if cursor.set_range(start):
                for key, value in cursor:
                    event_id, subject, payload = _OUTBOX_VALUE.decode(value)
                    items.append(OutboxItem(id=_ID.unpack(key)[0], event_id=event_id, subject=subject, payload=payload))
                    if len(items) == limit:
                        break
            return items

        return self.read("read the outbox", page) if limit > 0 else []

    def note_sent(self, items: Sequence[OutboxItem]) -> None:
        """The server acknowledged `items`, the oldest of `pending()` in its order: skip them from now on.

        Nothing is written now; see the module docstring for when their entries go.
        """
        if items:
            self._sent_through = max(self._sent_through, items[-1].id)

    def sent_unforgotten(self) -> bool:
        """Whether entries of sent events are still in the file (aforget_sent would delete them)."""
        return self._sent_through > self._forgotten_through

    async def aforget_sent(self) -> None:
        """Delete the entries of every event noted sent, in a transaction of its own; on disk when it returns."""
        if self.sent_unforgotten():
            await self._submit(("forget sent events", _nothing))

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Drop the given outbox items: the server acknowledged them."""
        self._now(*_sent(self.tables, ids))

    def outbox_size(self) -> int:
        """How many events wait to be sent (not those sent whose entries are still to go)."""
        through = _ID.pack(self._sent_through)

        def count(txn: lmdb.Transaction) -> int:
            stored = int(txn.stat(self.tables.outbox)["entries"])
            # Minus those noted sent and not deleted yet: a few at most (they go with the next write).
            return stored - len(_keys_while(txn.cursor(db=self.tables.outbox), lambda key: key <= through))

        return self.read("count the outbox", count)

    def outbox_ids_given(self) -> int:
        """How many events were ever queued in this file (the last outbox id given)."""
        last = self.read("read the outbox's last id", lambda txn: txn.get(_LAST_ID_KEY, db=self.tables.meta))
        return _ID.unpack(last)[0] if last is not None else 0

    # -- Config values --------------------------------------------------------------------

    def config_get(self, key: str) -> Any:
        """The value stored under `key`; KeyError when there is none."""
        value = self.read("read a config value", lambda txn: txn.get(key.encode(), db=self.tables.config))
        if value is None:
            raise KeyError(key)
        return msgspec.json.decode(value)

    def config_items(self) -> dict[str, Any]:
        def items(txn: lmdb.Transaction) -> dict[str, Any]:
            cursor = txn.cursor(db=self.tables.config)
            return {bytes(key).decode(): msgspec.json.decode(value) for key, value in cursor}

        return self.read("read the config values", items)

    def config_set(self, key: str, value: Any) -> None:
        """Store a JSON-able `value` under `key`, replacing any earlier one."""
        payload = msgspec.json.encode(value)
        self._now("store a config value", lambda txn: txn.put(key.encode(), payload, db=self.tables.config))

    # -- Any table (edge.updates.record's) ------------------------------------------------------

    def read(self, what: str, body: Callable[[lmdb.Transaction], T]) -> T:
        """`body(txn)` in a read transaction of its own: the last committed state, never waiting for a writer."""
        with _translate(what), self._env.begin() as txn:
            return body(txn)

    async def awrite(self, what: str, body: Callable[[lmdb.Transaction], T]) -> T:
        """Run `body(txn)` in a write transaction off the event loop; on disk when it returns."""
        return await self._writer.submit(what, body)

    # -- Plumbing -------------------------------------------------------------------------

    async def _submit(self, write: _Write) -> None:
        """Submit a write to the group commit, deleting the entries of the events sent since the last one with it."""
        through = self._sent_through
        if through > self._forgotten_through:
            write = _forgotten(self.tables, through, write[1], what=write[0])
        await self._writer.submit(*write)
        self._forgotten_through = max(self._forgotten_through, through)

    def _now(self, what: str, body: Callable[[lmdb.Transaction], T]) -> T:
        """Run a write's body in a transaction of its own, in this thread; on disk when it returns."""
        with self._lock, _translate(what):
            txn = self._env.begin(write=True)
            try:
                outcome = body(txn)
            except BaseException:
                txn.abort()
                raise
            txn.commit()
            return outcome


_Write = tuple[str, Callable[[lmdb.Transaction], None]]
_Row = tuple[bytes, bytes]  # event_id, the outbox value


# -- The writes: what each names itself in errors, and its body ------------------------------
# Events are encoded here, before the transaction starts, so a bad event never holds the write lock.


def _started(tables: Tables, command_id: str, events: Iterable[Event], now: datetime | None) -> _Write:
    rows, stamp = _rows(events), _stamp(now)

    def body(txn: lmdb.Transaction) -> None:
        if not put_ledger_entry(txn, tables, command_id, "started", stamp):
            raise StateError(f"command {command_id!r} is already in the ledger; check ledger_state() first")
        _append(txn, tables, rows)

    return f"mark command {command_id!r} started", body


def _finished(tables: Tables, command_id: str, events: Iterable[Event], now: datetime | None) -> _Write:
    rows, stamp = _rows(events), _stamp(now)

    def body(txn: lmdb.Transaction) -> None:
        entry = txn.get(command_id.encode(), db=tables.ledger)
        if entry is not None and entry[:1] == _FINISHED:
            raise StateError(f"command {command_id!r} is already finished; its outcome is recorded once")
        put_ledger_entry(txn, tables, command_id, "finished", stamp)
        _append(txn, tables, rows)

    return f"finish command {command_id!r}", body


def _queued(tables: Tables, events: Iterable[Event]) -> _Write:
    rows = _rows(events)
    return "queue events", lambda txn: _append(txn, tables, rows)


def _sent(tables: Tables, ids: Sequence[int]) -> _Write:
    keys = [_ID.pack(i) for i in ids]

    return "mark events sent", lambda txn: drop_outbox_entries(txn, tables, keys)


def _forgotten(
    tables: Tables, through: int, body: Callable[[lmdb.Transaction], None], *, what: str = "forget sent events"
) -> _Write:
    """`body`, after deleting the outbox entries up to `through` (sent events) in the same transaction."""
    last = _ID.pack(through)

    def forget_then(txn: lmdb.Transaction) -> None:
        drop_outbox_entries(txn, tables, _keys_while(txn.cursor(db=tables.outbox), lambda key: key <= last))
        body(txn)

    return what, forget_then


def _nothing(txn: lmdb.Transaction) -> None:
    pass


def _rows(events: Iterable[Event]) -> list[_Row]:
    return [(event.event_id.encode(), outbox_value(event.event_id, event.subject(), encode(event))) for event in events]


def _append(txn: lmdb.Transaction, tables: Tables, rows: list[_Row]) -> None:
    """Queue `rows` under the next ids; StateError when an event is queued already (its id is the dedup key)."""
    if not rows:
        return
    stored = txn.get(_LAST_ID_KEY, db=tables.meta)
    last = _ID.unpack(stored)[0] if stored is not None else 0
    for event_id, value in rows:
        last += 1
        if not put_outbox_entry(txn, tables, last, event_id, value):
            raise StateError(f"event {event_id.decode()} is queued twice; this is a bug, report it")
    put_last_outbox_id(txn, tables, last)


# -- The file's entries, written here and by edge.state_migration alone ----------------------


def put_ledger_entry(
    txn: lmdb.Transaction, tables: Tables, command_id: str, state: Literal["started", "finished"], stamp: float
) -> bool:
    """Write a command's ledger entry (a started one only where there is none); whether it was written."""
    key, when = command_id.encode(), _STAMP.pack(stamp)
    if state == "started":
        return bool(txn.put(key, _STARTED + when, overwrite=False, db=tables.ledger))
    txn.put(key, _FINISHED + when, db=tables.ledger)
    txn.put(when + key, b"", db=tables.finished)
    return True


def put_outbox_entry(txn: lmdb.Transaction, tables: Tables, outbox_id: int, event_id: bytes, value: bytes) -> bool:
    """Queue one encoded event under `outbox_id`; False (nothing written) when its event id is queued already."""
    key = _ID.pack(outbox_id)
    if not txn.put(event_id, key, overwrite=False, db=tables.event_ids):
        return False
    txn.put(key, value, append=True, db=tables.outbox)  # ids only grow: append is LMDB's fast path
    return True


def drop_outbox_entries(txn: lmdb.Transaction, tables: Tables, keys: Iterable[bytes]) -> None:
    """Delete the outbox entries under `keys` (packed ids) and their event ids; absent ones are skipped."""
    for key in keys:
        value = txn.pop(key, db=tables.outbox)
        if value is not None:
            txn.delete(_OUTBOX_VALUE.decode(value)[0].encode(), db=tables.event_ids)


def outbox_value(event_id: str, subject: str, payload: bytes) -> bytes:
    return msgspec.msgpack.encode((event_id, subject, payload))


def put_last_outbox_id(txn: lmdb.Transaction, tables: Tables, last: int) -> None:
    """The last outbox id given: the next event gets the one after, also once the outbox is empty."""
    txn.put(_LAST_ID_KEY, _ID.pack(last), db=tables.meta)


def _keys_while(cursor: lmdb.Cursor, wanted: Callable[[bytes], bool]) -> list[bytes]:
    """The keys from the table's first on, as long as `wanted(key)`: collected first, deleted after (if at all)."""
    keys: list[bytes] = []
    for stored in cursor.iternext(values=False):
        key = bytes(stored)  # the environment hands out bytes (buffers=False): this copies nothing
        if not wanted(key):
            break
        keys.append(key)
    return keys


def _stamp(now: datetime | None) -> float:
    return (now or utc_now()).timestamp()


@contextlib.contextmanager
def _translate(what: str) -> Iterator[None]:
    """The one place where lmdb and OS errors become StateError."""
    try:
        yield
    except lmdb.MapFullError as exc:
        raise StateError(
            f"could not {what}: the state file is full ({MAP_SIZE >> 20} MiB); its outbox holds more than a "
            "device should queue: check why the agent cannot send"
        ) from exc
    except lmdb.Error as exc:
        reason = exc.args[-1] if exc.args else exc
        raise StateError(f"could not {what}: {reason}; check the disk and the state file's permissions") from exc
    except OSError as exc:
        raise StateError(f"could not {what}: {exc.strerror or exc}; check the folder exists and is writable") from exc
