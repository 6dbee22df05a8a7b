"""edge.group_commit: writes made in the writer thread, many per commit, each on disk when its await returns."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import lmdb
import pytest

from edge.errors import StateError
from edge.group_commit import GroupCommit
from tests.waiting import eventually


@contextlib.contextmanager
def translate(what: str) -> Iterator[None]:
    try:
        yield
    except lmdb.Error as exc:
        raise StateError(f"could not {what}: {exc}") from exc


class Ledger:
    """An LMDB file synced at every commit, as edge.state opens it, and its group commit."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:  # made first, with its table, since a read-only environment can create neither
            made = lmdb.open(str(path), subdir=False, max_dbs=1)
            made.open_db(b"rows")
            made.close()
        self.env = lmdb.open(str(path), subdir=False, max_dbs=1, sync=True, readonly=readonly)
        self.rows = self.env.open_db(b"rows")
        self.lock = threading.Lock()
        self.commit = GroupCommit(self.env, self.lock, name=path.name, translate=translate)
        self.taken = threading.Event()  # a blocking body has started, in the writer thread
        self.release = threading.Event()  # what a blocking body waits for

    def insert(self, row_id: str) -> Callable[[lmdb.Transaction], str]:
        def body(txn: lmdb.Transaction) -> str:
            if not txn.put(row_id.encode(), b"", overwrite=False, db=self.rows):
                raise StateError(f"row {row_id} exists")
            return row_id

        return body

    def blocking(self, row_id: str) -> Callable[[lmdb.Transaction], str]:
        """A write that holds the writer thread until `release` is set, so what follows queues behind it."""

        def body(txn: lmdb.Transaction) -> str:
            txn.put(row_id.encode(), b"", db=self.rows)
            self.taken.set()
            self.release.wait()
            return row_id

        return body

    def on_disk(self) -> set[str]:
        """The rows a new read transaction sees: what is committed."""
        with self.env.begin(db=self.rows) as txn:
            return {bytes(key).decode() for key in txn.cursor().iternext(values=False)}

    def close(self) -> None:
        self.release.set()
        self.commit.close()
        self.env.close()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "ledger.lmdb")
    yield opened
    opened.close()


async def test_a_write_is_committed_in_the_writer_thread_and_on_disk_when_its_await_returns(ledger: Ledger) -> None:
    threads: list[int] = []

    def body(txn: lmdb.Transaction) -> str:
        threads.append(threading.get_ident())
        txn.put(b"a", b"", db=ledger.rows)
        return "done"

    assert await ledger.commit.submit("insert a", body) == "done"

    assert ledger.on_disk() == {"a"}
    assert threads != [threading.get_ident()]  # not on the event loop's thread
    assert (ledger.commit.commits, ledger.commit.writes) == (1, 1)


async def test_writes_queued_together_share_one_commit_and_each_is_on_disk_when_awaited(ledger: Ledger) -> None:
    seen: dict[str, set[str]] = {}

    async def write(row_id: str) -> None:
        await ledger.commit.submit(f"insert {row_id}", ledger.insert(row_id))
        seen[row_id] = ledger.on_disk()  # the moment it returned: another connection sees it

    first = asyncio.create_task(ledger.commit.submit("insert first", ledger.blocking("first")))
    await eventually(ledger.taken.is_set, timeout=5, what="the first write taken")
    others = [asyncio.create_task(write(f"r{i}")) for i in range(50)]
    await eventually(lambda: ledger.commit.queued() == 50, timeout=5, what="fifty writes queued")
    ledger.release.set()
    await asyncio.gather(first, *others)

    assert (ledger.commit.commits, ledger.commit.writes) == (2, 51)  # the first alone, then the fifty together
    assert all(row_id in rows for row_id, rows in seen.items())
    assert len(seen) == 50


async def test_a_refused_write_is_rolled_back_alone_and_its_batch_commits(ledger: Ledger) -> None:
    def refused(txn: lmdb.Transaction) -> None:
        txn.put(b"half-done", b"", db=ledger.rows)
        raise StateError("refused on purpose")

    first = asyncio.create_task(ledger.commit.submit("insert first", ledger.blocking("first")))
    await eventually(ledger.taken.is_set, timeout=5, what="the first write taken")
    before = asyncio.create_task(ledger.commit.submit("insert before", ledger.insert("before")))
    bad = asyncio.create_task(ledger.commit.submit("refuse", refused))
    duplicate = asyncio.create_task(ledger.commit.submit("insert first again", ledger.insert("first")))
    after = asyncio.create_task(ledger.commit.submit("insert after", ledger.insert("after")))
    await eventually(lambda: ledger.commit.queued() == 4, timeout=5, what="four writes queued")
    ledger.release.set()
    results = await asyncio.gather(first, before, bad, duplicate, after, return_exceptions=True)

    assert results[:2] == ["first", "before"] and results[4] == "after"
    assert isinstance(results[2], StateError) and str(results[2]) == "refused on purpose"
    assert isinstance(results[3], StateError) and str(results[3]) == "row first exists"
    assert ledger.on_disk() == {"first", "before", "after"}
    assert ledger.commit.commits == 2


async def test_a_transaction_that_cannot_begin_fails_every_write_of_its_batch(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "read-only.lmdb", readonly=True)
    try:
        results = await asyncio.gather(
            ledger.commit.submit("insert a", ledger.insert("a")),
            ledger.commit.submit("insert b", ledger.insert("b")),
            return_exceptions=True,
        )

        assert [type(result) for result in results] == [StateError, StateError]
        assert str(results[0]).startswith("could not insert a: Cannot start write transaction")
        assert str(results[1]).startswith("could not insert b: Cannot start write transaction")
        assert results[0] is not results[1]  # one error per caller
        assert ledger.on_disk() == set() and ledger.commit.commits == 0
    finally:
        ledger.close()


async def test_close_finishes_what_was_submitted_even_for_a_caller_that_stopped_waiting(ledger: Ledger) -> None:
    first = asyncio.create_task(ledger.commit.submit("insert first", ledger.blocking("first")))
    await eventually(ledger.taken.is_set, timeout=5, what="the first write taken")
    waiting = asyncio.create_task(ledger.commit.submit("insert waiting", ledger.insert("waiting")))
    gone = asyncio.create_task(ledger.commit.submit("insert gone", ledger.insert("gone")))
    await eventually(lambda: ledger.commit.queued() == 2, timeout=5, what="two writes queued")
    gone.cancel()
    ledger.release.set()

    ledger.commit.close()  # blocks until the writer thread has done everything submitted

    assert ledger.on_disk() == {"first", "waiting", "gone"}
    assert await asyncio.gather(first, waiting) == ["first", "waiting"]
    with pytest.raises(StateError) as caught:
        await ledger.commit.submit("insert late", ledger.insert("late"))

    assert str(caught.value) == "could not insert late: ledger.lmdb is closed"


async def test_the_thread_starts_with_the_first_write(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "idle.lmdb")
    try:
        assert not ledger.commit.started()
        await ledger.commit.submit("insert a", ledger.insert("a"))
        assert ledger.commit.started()
    finally:
        ledger.close()
