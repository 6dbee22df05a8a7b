"""`mahavishnu init`: create the state directory (CA, certificates, configuration) without running the mesh."""

from __future__ import annotations

import argparse

from core.config import Settings
from mahavishnu.runtime.home import Home


def add(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(handler=_init)


def _init(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.runtime.provisioning import prepare

    prepare(home, settings)
    print(f"state directory ready: {home.root}")
    return 0
