"""`mahavishnu restore DIR`: the streams back from a backup, with the mesh stopped (see mahavishnu.control.backup)."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.config import Settings
from mahavishnu.control import backup
from mahavishnu.runtime.home import Home


def add(load: argparse.ArgumentParser) -> None:
    load.add_argument("dir", type=Path, help="a directory written by `mahavishnu backup`")
    load.set_defaults(handler=_restore)


async def _restore(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    await backup.restore(home, settings, args.dir.resolve())
    return 0
