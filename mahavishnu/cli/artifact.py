"""`mahavishnu artifact add|list|show|remove`: software artifacts in the mesh's artifacts bucket.

The steps are mahavishnu.updates.artifacts', as the control identity, like `cmd send`.
How artifacts are printed is pure (`artifact_line`, `artifact_text`, `size_text`).
`add_actions(actions)` adds this module's actions to the `artifact` verb's subparsers,
so other modules can add theirs to the same verb.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.config import Settings
from mahavishnu.cli import artifact_trust
from mahavishnu.cli.mesh import control_store
from mahavishnu.runtime.home import Home
from mahavishnu.updates import artifacts
from mahavishnu.updates.catalog import Artifact
from mahavishnu.updates.trust import control as trust

ACTOR = "control"  # the identity the command line acts as, as `cmd send` does
BAR = 30


def add(artifact: argparse.ArgumentParser) -> None:
    actions = artifact.add_subparsers(dest="artifact_command", required=True, metavar="ACTION")
    add_actions(actions)
    artifact_trust.add_actions(actions)  # sign, trust init|show|add-signature|rotate-root|refresh


def add_actions(actions: Any) -> None:
    """This module's actions on the `artifact` verb's subparsers (argparse's _SubParsersAction)."""
    adding = actions.add_parser("add", help="store FILE as NAME@VERSION for one device type, and record it")
    adding.add_argument("file", help="the artifact's file")
    adding.add_argument("--name", required=True, help="the artifact's name, e.g. firmware")
    adding.add_argument("--version", required=True, help="its version, e.g. 1.4.2")
    adding.add_argument("--device-type", required=True, help="the kind of device it is for, e.g. rpi4")
    adding.add_argument(
        "--depends",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME[@VERSION]",
        help="what must be installed first (repeatable)",
    )
    adding.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    adding.set_defaults(handler=_add)

    listing = actions.add_parser("list", help="every artifact: name@version, device type, size, digest")
    listing.add_argument("--json", action="store_true", help="one JSON document per artifact")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one artifact: what was recorded, and its bytes in the bucket")
    show.add_argument("ref", metavar="NAME@VERSION")
    show.add_argument("--json", action="store_true", help="as one JSON document")
    show.set_defaults(handler=_show)

    remove = actions.add_parser("remove", help="delete NAME@VERSION's bytes, and record it")
    remove.add_argument("ref", metavar="NAME@VERSION")
    remove.add_argument("--reason", default="", help="why, for the record")
    remove.set_defaults(handler=_remove)


async def _add(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    ref = f"{args.name}@{args.version}"
    async with control_store(home, settings, "artifact") as store:
        added = await artifacts.add(
            store,
            Path(args.file),
            name=args.name,
            version=args.version,
            device_type=args.device_type,
            depends=args.depends,
            actor=ACTOR,
            progress=None if args.quiet else _bar(f"uploading {ref}"),
        )
        # Devices install only what the targets role signed (ADR 0016): signed now, or staged.
        signing = await trust.stage_target(
            home,
            store.js,
            store,
            name=added.name,
            version=added.version,
            length=added.length,
            sha256=added.sha256,
            device_type=added.device_type,
            depends=added.depends,
            actor=ACTOR,
        )
    if not args.quiet:
        sys.stderr.write("\n")
    print(artifact_line(added))
    print(artifact_trust.signing_text(signing, ref, added=True))
    return 0


async def _list(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "artifact") as store:
        found = await artifacts.artifacts(store)
    for artifact in found.values():
        print(json.dumps(artifact_document(artifact)) if args.json else artifact_line(artifact))
    return 0


async def _show(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "artifact") as store:
        shown = await artifacts.show(store, args.ref)
    stored = None
    if shown.stored is not None:
        stored = {"size": shown.stored.size, "chunks": shown.stored.chunks, "sha256": shown.stored.sha256}
    if args.json:
        print(json.dumps({**artifact_document(shown.artifact), "stored": stored}, indent=2))
    else:
        print(artifact_text(shown.artifact, stored))
    return 0


async def _remove(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "artifact") as store:
        await artifacts.remove(store, args.ref, actor=ACTOR, reason=args.reason)
        name, _, version = args.ref.partition("@")  # a well-formed ref: remove refused any other
        signing = await trust.withdraw_target(home, store.js, store, name=name, version=version, actor=ACTOR)
    print(f"{args.ref}: removed")
    print(artifact_trust.signing_text(signing, args.ref, added=False))
    return 0


def artifact_document(artifact: Artifact) -> dict[str, Any]:
    return {
        "name": artifact.name,
        "version": artifact.version,
        "device_type": artifact.device_type,
        "length": artifact.length,
        "sha256": artifact.sha256,
        "depends": list(artifact.depends),
        "filename": artifact.filename,
        "added_at": artifact.added_at.isoformat(),
        "added_by": artifact.added_by,
    }


def size_text(length: int) -> str:
    """A byte count as people read it: 512 B, 3.4 KiB, 50.0 MiB (pure)."""
    size = float(length)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{length} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def artifact_line(artifact: Artifact) -> str:
    """One artifact as `artifact list` prints it (pure)."""
    fields = [
        artifact.ref,
        artifact.device_type,
        size_text(artifact.length),
        f"sha256:{artifact.sha256[:16]}",
        f"added {artifact.added_at:%Y-%m-%d %H:%M:%S} by {artifact.added_by}",
    ]
    if artifact.depends:
        fields.append(f"depends {','.join(artifact.depends)}")
    return "  ".join(fields)


def artifact_text(artifact: Artifact, stored: dict[str, Any] | None) -> str:
    """One artifact as `artifact show` prints it (pure); `stored` is its object's size, chunks and digest."""
    lines = [
        artifact.ref,
        f"device type: {artifact.device_type}",
        f"length: {artifact.length} ({size_text(artifact.length)})",
        f"sha256: {artifact.sha256}",
        f"depends: {', '.join(artifact.depends) or '-'}",
        f"file: {artifact.filename or '-'}",
        f"added: {artifact.added_at.isoformat()} by {artifact.added_by}",
    ]
    if stored is None:
        lines.append("bytes: missing from the artifacts bucket (remove it and add it again)")
    elif stored["size"] != artifact.length or stored["sha256"] != artifact.sha256:
        lines.append(f"bytes: {stored['size']} in {stored['chunks']} chunks, NOT the recorded length or digest")
    else:
        lines.append(f"bytes: in the artifacts bucket, {stored['chunks']} chunks")
    return "\n".join(lines)


def _bar(label: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        share = min(1.0, done / total) if total else 1.0
        filled = int(share * BAR)
        sys.stderr.write(
            f"\r{label} [{'#' * filled}{'.' * (BAR - filled)}] {size_text(done)} of {size_text(total)} {share:.0%}"
        )
        sys.stderr.flush()

    return show
