"""`mahavishnu env [--json]`: the control identity's URL and TLS files, for scripts and the `nats` CLI."""

from __future__ import annotations

import argparse
import json

from core.config import Settings
from mahavishnu.runtime.home import Home


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="as one JSON object")
    parser.set_defaults(handler=_env)


def env_document(home: Home, settings: Settings) -> dict[str, str]:
    """The control identity, as `mahavishnu env --json` prints it (pure)."""
    identity = home.control_identity(settings)
    return {
        "url": identity.url,
        "ca": str(identity.ca),
        "cert": str(identity.cert),
        "key": str(identity.key),
        "home": str(home.root),
    }


def _env(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    document = env_document(home, settings)
    if args.json:
        print(json.dumps(document))
    else:
        for key, value in document.items():
            print(f"MAHAVISHNU_{key.upper()}={value}")
    return 0
