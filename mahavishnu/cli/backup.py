"""`mahavishnu backup DIR [--include-keys]` and `mahavishnu restore DIR` (see mahavishnu.control.backup)."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.config import Settings
from mahavishnu.control import backup
from mahavishnu.runtime.home import Home


def add(save: argparse.ArgumentParser) -> None:
    save.add_argument("dir", type=Path, help="a new or empty directory")
    save.add_argument(
        "--include-keys", action="store_true", help="also the private keys (needed to restore into an empty home)"
    )
    save.set_defaults(handler=_backup)


async def _backup(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    await backup.backup(home, settings, args.dir.resolve(), include_keys=args.include_keys)
    return 0
