"""`mahavishnu db rekey`: encrypt every read model with a new key, with `up` stopped."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from core.config import Settings
from core.errors import MahavishnuError
from mahavishnu.runtime.home import Home
from projections.database import KEY_ENV, KEY_FILE, database_key, open_encrypted
from projections.service import FolderLock


def add(db: argparse.ArgumentParser) -> None:
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    actions.add_parser("rekey", help="encrypt every read model with a new key (`up` stopped)").set_defaults(
        handler=_rekey
    )


async def _rekey(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    if os.environ.get(KEY_ENV):
        raise MahavishnuError(f"the key comes from {KEY_ENV}: unset it to rekey the key file, or rekey by hand")
    lock = FolderLock(home.readmodels_dir)
    lock.acquire()
    try:
        old, new = database_key(home.root, os.environ), secrets.token_hex(32)
        files = sorted(home.readmodels_dir.glob("*.db"))
        for path in files:
            db = await open_encrypted(path, old)
            try:
                await db.execute_fetchall(f"PRAGMA rekey = \"x'{new}'\"")
            finally:
                await db.close()
        _write_key(home.root / KEY_FILE, new)
    finally:
        lock.release()
    print(f"rekeyed {len(files)} read model(s); the new key is in {home.root / KEY_FILE}")
    return 0


def _write_key(path: Path, key: str) -> None:
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.replace(tmp, path)
