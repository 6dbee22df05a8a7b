"""Pooled read-only connections to the read-model files, for the queries.

Opening an encrypted file for every query costs a connection, the key, decrypting and
parsing the schema, and it starts each query with an empty page cache, so every page it
touches is read and decrypted again. Instead each file keeps up to POOL_SIZE connections
open between queries, and a query runs whole (connection, SQL, rows) in one trip to a
small thread pool, so the event loop waits on one hand-over instead of several.

A rebuild swaps a new file in with one rename. Each use compares the file's identity
(device and inode) with the one noted before the connection was opened: a connection to
a replaced file is closed and a fresh one opened. The inode cannot be reused by another
file while our connection holds the old one open, and it is noted before opening, so a
swap racing the open costs at most one needless reopen, never a stale answer. Closing a
connection to a replaced file is safe for the new one: SQLite sees that its file moved
and neither checkpoints nor deletes the write-ahead log by name on close.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlcipher3

from core.errors import MahavishnuError
from projections.database import connect_reader

POOL_SIZE = 4  # connections per file, and threads in all: two cores, and SQLite reads while the loop works
MAX_FILES = 16  # pools kept; the least recently used beyond this are closed (tests make many folders)

_executor = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="read-model")
_lock = threading.Lock()
_pools: OrderedDict[tuple[Path, str], _Pool] = OrderedDict()


class NotBuilt(MahavishnuError):
    """The read-model file does not exist (yet); the message names it."""


class _Pool:
    """The idle connections to one file, each with the identity of the file it opened."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key
        self.idle: list[tuple[tuple[int, int], sqlcipher3.Connection]] = []
        self.closed = False

    def take(self) -> tuple[tuple[int, int], sqlcipher3.Connection]:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            raise NotBuilt(f"the read model {self.path} is not built yet: `mahavishnu up` builds it") from None
        current = (stat.st_dev, stat.st_ino)
        with _lock:
            while self.idle:
                identity, connection = self.idle.pop()
                if identity == current:
                    return identity, connection
                connection.close()  # the file was replaced (rebuilt) since this one was opened
        return current, connect_reader(self.path, self.key)

    def give_back(self, identity: tuple[int, int], connection: sqlcipher3.Connection) -> None:
        with _lock:
            if not self.closed and len(self.idle) < POOL_SIZE:
                self.idle.append((identity, connection))
                return
        connection.close()

    def close(self) -> None:
        with _lock:
            self.closed = True
            idle, self.idle = self.idle, []
        for _, connection in idle:
            connection.close()


def _pool(path: Path, key: str) -> _Pool:
    evicted: list[_Pool] = []
    with _lock:
        pool = _pools.get((path, key))
        if pool is None:
            pool = _pools[(path, key)] = _Pool(path, key)
            while len(_pools) > MAX_FILES:
                evicted.append(_pools.popitem(last=False)[1])
        else:
            _pools.move_to_end((path, key))
    for old in evicted:
        old.close()
    return pool


def _rows(pool: _Pool, sql: str, params: Sequence[object] | Mapping[str, object]) -> list[dict[str, Any]]:
    identity, connection = pool.take()
    try:
        cursor = connection.execute(sql, params)
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    except BaseException:
        connection.close()  # in an unknown state: not worth keeping
        raise
    pool.give_back(identity, connection)
    return rows


async def rows(
    path: Path, key: str, sql: str, params: Sequence[object] | Mapping[str, object] = ()
) -> list[dict[str, Any]]:
    """The rows of one read-only statement on the read model at `path`, as dicts by column name.

    NotBuilt when the file does not exist; DatabaseKeyError when `key` does not open it;
    sqlcipher3.Error when the statement fails.
    """
    pool = _pool(path, key)
    return await asyncio.get_running_loop().run_in_executor(_executor, _rows, pool, sql, params)


def close(folder: Path | None = None) -> None:
    """Close the pooled connections to the files in `folder` (every file when None); later queries reopen."""
    with _lock:
        chosen = [k for k in _pools if folder is None or k[0].parent == folder]
        pools = [_pools.pop(k) for k in chosen]
    for pool in pools:
        pool.close()
