"""`mahavishnu ca ...`: the certificate authority's own command line (certs.cli), run in the mesh's home."""

from __future__ import annotations

import argparse
from typing import cast

from certs import cli as certs_cli
from core.config import Settings
from mahavishnu.runtime.home import Home


def add(ca: argparse.ArgumentParser) -> None:
    certs_cli.add(ca)
    ca.set_defaults(handler=_run)


def _run(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    # certs knows nothing of Home: its commands take the state directory itself.
    return cast(int, args.func(args, home.root))
