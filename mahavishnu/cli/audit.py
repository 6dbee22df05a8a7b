"""`mahavishnu audit search|verify|export`: the audit trail for people and for other tools."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from core.audit import verify_chain
from core.config import Settings
from core.errors import MahavishnuError
from core.events import AuditRecorded, EventDecodeError, decode
from mahavishnu.cli.mesh import control_store
from mahavishnu.runtime.home import Home
from projections.audit_queries import PAGE_MAX, AuditSearch, audit_search
from projections.database import database_key
from projections.reading import ReadModels

SUBJECTS = "mesh.audit.>"


def add(audit: argparse.ArgumentParser) -> None:
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    search = actions.add_parser("search", help="entries of the audit read model, newest first, as JSON lines")
    for option in ("actor", "device", "action", "since", "until"):
        search.add_argument(f"--{option}")
    search.add_argument("--limit", type=int, default=100, help="entries wanted, read a page at a time (default 100)")
    search.set_defaults(handler=_search)
    verify = actions.add_parser("verify", help="check the hash chain of the stream, or of an exported file")
    verify.add_argument("--file", help="a file written by `audit export --format jsonl`")
    verify.set_defaults(handler=_verify)
    export = actions.add_parser("export", help="the whole trail from the stream")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.set_defaults(handler=_export)


async def _search(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise MahavishnuError(f"--limit must be 1 or more, not {args.limit}")
    models = ReadModels(home.readmodels_dir, database_key(home.root, os.environ))
    async for entry in _entries(models, args, args.limit):
        print(json.dumps(entry))
    return 0


async def _entries(models: ReadModels, args: argparse.Namespace, wanted: int) -> AsyncIterator[dict[str, object]]:
    """Up to `wanted` matching entries, newest first, following the search's pages (each a bounded read)."""
    before: int | None = None
    while wanted > 0:
        request = AuditSearch(
            actor=args.actor,
            device=args.device,
            action=args.action,
            since=args.since,
            until=args.until,
            before=before,
            limit=min(wanted, PAGE_MAX),
        )
        page = msgspec.json.decode(await audit_search(models, request))
        for entry in page["entries"]:
            yield entry
        wanted -= len(page["entries"])
        before = page["next"]
        if before is None:
            return


async def _stored(home: Home, settings: Settings) -> list[tuple[int, bytes]]:
    async with control_store(home, settings, "audit") as store:
        return [(s.seq, s.data) async for s in store.read(SUBJECTS)]


def entries_of(lines: list[tuple[int, bytes]]) -> list[tuple[int, AuditRecorded | None]]:
    """Decode stored or exported entries; an undecodable one stays in the chain as None (pure)."""
    entries: list[tuple[int, AuditRecorded | None]] = []
    for seq, data in lines:
        try:
            event = decode(data)
        except EventDecodeError:
            event = None
        entries.append((seq, event if isinstance(event, AuditRecorded) else None))
    return entries


def read_export(path: Path) -> list[tuple[int, bytes]]:
    """The (seq, event JSON) pairs of a jsonl export; MahavishnuError naming a bad line."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            pairs.append((int(row["seq"]), json.dumps(row["event"]).encode()))
        except (ValueError, KeyError, TypeError) as exc:
            raise MahavishnuError(f"{path} line {number} is not an audit export line ({exc})") from None
    return pairs


async def _verify(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    pairs = read_export(Path(args.file)) if args.file else await _stored(home, settings)
    breaks = verify_chain(entries_of(pairs))
    source = args.file or "the AUDIT stream"
    if not breaks:
        print(f"audit chain intact: {len(pairs)} entries in {source}")
        return 0
    for found in breaks:
        print(f"seq {found.seq}: {found.problem}")
    print(f"audit chain BROKEN in {source}: {len(breaks)} problem(s)", file=sys.stderr)
    return 1


async def _export(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    pairs = await _stored(home, settings)
    if args.format == "jsonl":
        for seq, data in pairs:
            print(json.dumps({"seq": seq, "event": json.loads(data)}))
        return 0
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["seq", "at", "actor", "category", "action", "target", "outcome", "details", "prev_hash"])
    for seq, event in entries_of(pairs):
        if event is None:
            writer.writerow([seq, "", "", "", "(unreadable entry)", "", "", "", ""])
            continue
        writer.writerow(
            [
                seq,
                event.occurred_at.isoformat(),
                event.actor,
                event.category,
                event.action,
                event.target,
                event.outcome,
                json.dumps(event.details),
                event.prev_hash,
            ]
        )
    sys.stdout.write(out.getvalue())
    return 0
