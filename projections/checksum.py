"""A read model's content checksum: equal files hold equal rows, whatever their page layout.

Used to show that a rebuilt read model equals the live one, and that a mesh restored from
a backup answers as it did (`mahavishnu projections checksum`). Every ordinary table is
hashed row by row in primary-key order (the rowid, or every column); virtual tables and
their shadow tables (full-text indexes) are left out, since their content follows from
the tables they index.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from projections.database import open_encrypted


async def content_checksum(path: Path, key: str) -> str:
    """The hex SHA-256 of every row of every ordinary table of the encrypted file at `path`."""
    db = await open_encrypted(path, key, reader=True)
    digest = hashlib.sha256()
    try:
        tables = [
            str(row[1])
            for row in await db.execute_fetchall("PRAGMA table_list")
            if row[0] == "main" and row[2] == "table" and not str(row[1]).startswith("sqlite_")
        ]
        for table in sorted(tables):
            columns = [str(row[1]) for row in await db.execute_fetchall(f'PRAGMA table_info("{table}")')]
            order = ", ".join(f'"{c}"' for c in columns)
            digest.update(f"{table}({order})\n".encode())
            for row in await db.execute_fetchall(f'SELECT {order} FROM "{table}" ORDER BY {order}'):
                digest.update(repr(tuple(row)).encode() + b"\n")
    finally:
        await db.close()
    return digest.hexdigest()
