"""`mahavishnu artifact`: software artifacts and their signed metadata (this branch: the trust's actions only)."""

from __future__ import annotations

import argparse

from mahavishnu.cli import artifact_trust


def add(artifact: argparse.ArgumentParser) -> None:
    actions = artifact.add_subparsers(dest="artifact_command", required=True, metavar="ACTION")
    artifact_trust.add_actions(actions)
