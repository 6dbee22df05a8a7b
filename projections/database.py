"""Encrypted read-model files: SQLCipher (the sqlcipher3 wheel) driven through aiosqlite.

The key is 32 random bytes, given to SQLCipher as a raw hex key (`x'...'`), so opening
a file costs no key derivation. It comes from MAHAVISHNU_DB_KEY or from the 0600 file
`db.key` in the state directory; a missing or wrong key stops with a message saying so,
never with SQLite's "file is not a database".
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiosqlite
import sqlcipher3

from core.errors import MahavishnuError

KEY_FILE = "db.key"
KEY_ENV = "MAHAVISHNU_DB_KEY"
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
T = TypeVar("T")


class DatabaseKeyError(MahavishnuError):
    """The read models' key is missing, malformed or does not open the file."""


def ensure_key_file(home: Path) -> Path:
    """Create the 0600 key file once (32 random bytes, hex); return its path."""
    path = home / KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    return path


def database_key(home: Path, env: Mapping[str, str]) -> str:
    """The key as 64 hex digits, from the environment or the key file; DatabaseKeyError otherwise."""
    if env.get(KEY_ENV):
        key, source = env[KEY_ENV].strip().lower(), KEY_ENV
    else:
        path = home / KEY_FILE
        try:
            key, source = path.read_text().strip().lower(), str(path)
        except FileNotFoundError:
            raise DatabaseKeyError(
                f"no read-model key: {path} is missing and {KEY_ENV} is not set; restore the key file, "
                "or start with `mahavishnu up` to create one (existing read models are then rebuilt)"
            ) from None
    if not _HEX_KEY.fullmatch(key):
        raise DatabaseKeyError(f"the read-model key in {source} must be 64 hexadecimal digits (32 bytes)")
    return key


def connect_reader(path: Path, key: str) -> sqlcipher3.Connection:
    """A read-only connection to an existing encrypted database, without aiosqlite (projections.readers).

    Never creates the file (sqlcipher3.OperationalError when it is gone), never changes it
    (query_only, and the journal mode is left to the writer). Usable from any thread.
    DatabaseKeyError when the key does not open it.
    """
    uri = f"file:{quote(str(path))}?mode=rw"
    connection = sqlcipher3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        connection.execute(f"PRAGMA key = \"x'{key}'\"")
        connection.execute("PRAGMA busy_timeout = 10000")
        connection.execute("SELECT count(*) FROM sqlite_master").fetchall()  # the first read decrypts: the key check
        connection.execute("PRAGMA query_only = 1")
    except sqlcipher3.OperationalError:  # locked, gone, out of memory...: not about the key
        connection.close()
        raise
    except sqlcipher3.DatabaseError as exc:
        connection.close()
        raise DatabaseKeyError(
            f"cannot open {path}: the read-model key does not match it; restore the key it was written "
            "with, or delete the file so that it is rebuilt from the streams"
        ) from exc
    except BaseException:
        connection.close()
        raise
    return connection


async def open_encrypted(path: Path, key: str, *, reader: bool = False) -> aiosqlite.Connection:
    """Open (or create) an encrypted database; DatabaseKeyError when the key does not open it.

    A `reader` (a query, a status command) never changes the file: it leaves the journal
    mode, which the writer set once, alone, since changing it needs an exclusive lock.
    Every connection waits up to 10 s for a lock instead of failing at once.
    """

    def connector() -> sqlcipher3.Connection:
        connection = sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA key = \"x'{key}'\"")
        connection.execute("PRAGMA busy_timeout = 10000")
        return connection

    db = aiosqlite.Connection(connector, 64)
    await db
    try:
        await db.execute_fetchall("SELECT count(*) FROM sqlite_master")  # the first read decrypts: the key check
    except sqlcipher3.DatabaseError as exc:
        await db.close()
        raise DatabaseKeyError(
            f"cannot open {path}: the read-model key does not match it; restore the key it was written "
            "with, or delete the file so that it is rebuilt from the streams"
        ) from exc
    if reader:
        await db.execute("PRAGMA query_only = 1")
    else:
        await db.execute_fetchall("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
    return db


async def on_connection_thread(db: aiosqlite.Connection, work: Callable[..., T], *args: Any) -> T:
    """Run `work(connection, *args)` on `db`'s own thread with its sqlcipher3 connection: one hop for all of it.

    aiosqlite hops to its thread and back for every statement; a writer that runs many
    statements per transaction (projections.writing) does them in one call instead.
    aiosqlite offers no public way to do so, so this is the one place that reaches into it
    (`_execute`, `_conn`; aiosqlite is pinned in the lock, tests/projections cover it).
    """
    return await db._execute(work, db._conn, *args)  # type: ignore[no-untyped-call,no-any-return]
