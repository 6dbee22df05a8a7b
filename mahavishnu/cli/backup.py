"""`mahavishnu backup DIR [--include-keys]` and `mahavishnu restore DIR` (see mahavishnu.control.backup)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import Settings
from mahavishnu.control import backup
from mahavishnu.runtime.home import Home


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], bind: Callable[[Any], object]) -> None:
    save = subparsers.add_parser("backup", help="snapshot the streams and the mesh's files into DIR (mesh up)")
    save.add_argument("dir", type=Path, help="a new or empty directory")
    save.add_argument(
        "--include-keys", action="store_true", help="also the private keys (needed to restore into an empty home)"
    )
    save.set_defaults(func=bind(_backup))
    load = subparsers.add_parser("restore", help="restore the streams from a backup DIR (mesh stopped)")
    load.add_argument("dir", type=Path, help="a directory written by `mahavishnu backup`")
    load.set_defaults(func=bind(_restore))


async def _backup(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    await backup.backup(home, settings, args.dir.resolve(), include_keys=args.include_keys)
    return 0


async def _restore(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    await backup.restore(home, settings, args.dir.resolve())
    return 0
