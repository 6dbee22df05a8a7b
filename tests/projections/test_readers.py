"""Pooled read-only connections: reused between queries, never stale after a rebuild swapped the file."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlcipher3

from core.events import DeviceEnrolled
from core.store import EventStore
from projections import readers
from projections.database import DatabaseKeyError, open_encrypted
from projections.devices import Devices
from projections.runner import ProjectionRunner

KEY = secrets.token_hex(32)


@pytest.fixture(autouse=True)
def no_pools_left(tmp_path: Path) -> Iterator[None]:
    yield
    readers.close(tmp_path)


async def make_table(path: Path, *values: str) -> None:
    db = await open_encrypted(path, KEY)
    try:
        await db.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        await db.executemany("INSERT INTO t (v) VALUES (?)", [(v,) for v in values])
    finally:
        await db.close()


async def values(path: Path) -> list[str]:
    return [row["v"] for row in await readers.rows(path, KEY, "SELECT v FROM t ORDER BY rowid")]


def idle(path: Path) -> int:
    return len(readers._pools[(path, KEY)].idle)


async def test_a_connection_is_kept_for_the_next_query_and_sees_new_writes(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    await make_table(path, "a")
    assert await values(path) == ["a"]
    assert idle(path) == 1
    await make_table(path, "b")  # another connection writes meanwhile
    assert await values(path) == ["a", "b"]
    assert idle(path) == 1  # the same connection, reused


async def test_concurrent_queries_use_at_most_a_pool_of_connections(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    await make_table(path, "a")
    answers = await asyncio.gather(*(values(path) for _ in range(40)))
    assert answers == [["a"]] * 40
    assert 1 <= idle(path) <= readers.POOL_SIZE


async def test_a_missing_file_is_reported_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(readers.NotBuilt):
        await values(path)
    assert not path.exists()


async def test_a_wrong_key_is_told_apart_from_a_bad_statement(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    await make_table(path, "a")
    with pytest.raises(DatabaseKeyError, match="key does not match"):
        await readers.rows(path, secrets.token_hex(32), "SELECT v FROM t")
    with pytest.raises(sqlcipher3.OperationalError, match="no such table"):
        await readers.rows(path, KEY, "SELECT v FROM nowhere")
    with pytest.raises(sqlcipher3.OperationalError, match="readonly"):
        await readers.rows(path, KEY, "INSERT INTO t (v) VALUES ('x')")  # the queries' connections never write
    assert await values(path) == ["a"]


async def test_closing_a_folder_drops_its_connections(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    await make_table(path, "a")
    await values(path)
    readers.close(tmp_path)
    assert (path, KEY) not in readers._pools
    assert await values(path) == ["a"]  # the next query opens again


async def test_after_a_rebuild_queries_read_the_new_file(store: EventStore, tmp_path: Path) -> None:
    def enrolled(device: str) -> DeviceEnrolled:
        return DeviceEnrolled(device_id=device, serial="ab", fingerprint_sha256="f", not_after=datetime.now(UTC))

    async def listed() -> set[str]:
        found = await readers.rows(runner.path, KEY, "SELECT device_id FROM devices")
        return {row["device_id"] for row in found}

    first, second = (f"dev-{uuid.uuid4().hex[:8]}" for _ in range(2))
    await store.append(enrolled(first))
    runner = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY)
    await runner.open()
    try:
        await runner.catch_up()
        assert first in await listed()  # a pooled connection to the file as it was
        await runner.rebuild()
        await store.append(enrolled(second))
        await runner.catch_up()  # written to the new file only: a connection to the old one would not see it
        assert {first, second} <= await listed()
        [(identity, _)] = readers._pools[(runner.path, KEY)].idle
        stat = runner.path.stat()
        assert identity == (stat.st_dev, stat.st_ino)  # the old file's connection was let go
    finally:
        await runner.close()
