"""`mahavishnu campaign create|list|show|pause|resume|next-wave|cancel`: fleet campaigns (docs/campaigns.md).

The write steps are mahavishnu.campaigns.control's, as the control identity, like `cmd
send`; `list` and `show` ask the running mesh's campaigns queries (mesh.q.campaigns.list
and .get), so they say what the dashboard and /api/campaigns say. How their answers are
printed is pure (`campaign_line`, `campaign_text`) and tested on such answers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import MahavishnuError
from core.tags import parse_tags
from mahavishnu.campaigns import control, specfile
from mahavishnu.cli.arguments import command_arguments
from mahavishnu.cli.mesh import control_store
from mahavishnu.control.requests import query
from mahavishnu.runtime.home import Home
from mahavishnu.updates import catalog

ACTOR = "control"  # the identity the command line acts as, as `cmd send` does
FLAGS = "flags"  # how a refusal names a campaign given by flags rather than a file
# The execution states in the order an operator reads them: under way, then how they ended.
STATES = ("queued", "in_progress", "succeeded", "failed", "timed_out", "rejected", "removed", "canceled")


def add(campaign: argparse.ArgumentParser) -> None:
    actions = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")

    create = actions.add_parser(
        "create", help="start a campaign from FILE.toml (docs/campaigns.md), or from flags for one command"
    )
    create.add_argument("file", nargs="?", help="the campaign file (TOML); or give --command and the targets")
    create.add_argument("--command", help="the command each device runs, e.g. ping")
    create.add_argument(
        "--update", metavar="NAME@VERSION", help="install this artifact (`artifact add`) on each device, instead"
    )
    create.add_argument(
        "--allow-downgrade", action="store_true", help="with --update: also on devices running a newer version"
    )
    create.add_argument("--args", default="{}", help="its arguments, a JSON object")
    create.add_argument("--devices", help="the targets, by id: ID,ID,...")
    create.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="the targets, by tag (repeatable: all must match)",
    )
    create.add_argument("--max-per-minute", type=float, help="at most this many devices notified in any minute")
    create.add_argument("--name", help="the campaign's name (default: the command's)")
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="every campaign: its status and counts")
    listing.add_argument("--json", action="store_true", help="one JSON document per campaign")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one campaign: counts per state and per wave, the rule that fired")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="the query's answer as it is")
    show.set_defaults(handler=_show)

    for name, help_text in (
        ("pause", "notify no device more until resume (executions under way go on)"),
        ("resume", "go on after a pause: yours, or a rule's or a gate's"),
        ("next-wave", "open the next wave now, and resume if paused"),
    ):
        step = actions.add_parser(name, help=help_text)
        step.add_argument("id")
        step.set_defaults(handler=_step)

    cancel = actions.add_parser("cancel", help="notify no device more; cancel the executions not yet taken")
    cancel.add_argument("id")
    cancel.add_argument("--force", action="store_true", help="also cancel the executions in progress")
    cancel.set_defaults(handler=_cancel)


def flags_document(args: argparse.Namespace) -> dict[str, Any]:
    """The campaign file's tables that the flags of `create` stand for (pure); MahavishnuError for bad flags.

    The document goes through specfile.parse like a file, so both are checked alike.
    """
    if (args.command is None) == (args.update is None):
        raise MahavishnuError(
            "campaign create: give a campaign file, or --command NAME or --update NAME@VERSION with --devices or --tag"
        )
    if args.allow_downgrade and args.update is None:
        raise MahavishnuError("--allow-downgrade goes with --update NAME@VERSION")
    arguments = command_arguments(args.args)
    if args.devices is not None and args.tag:
        raise MahavishnuError("give the targets by --devices or by --tag, not both")
    if args.devices is None and not args.tag:
        raise MahavishnuError("give the targets: --devices ID,ID,... or --tag KEY=VALUE (repeatable)")
    targets: dict[str, Any] = {"tags": parse_tags(args.tag)}
    if args.devices is not None:
        targets = {"devices": [device.strip() for device in args.devices.split(",") if device.strip()]}
    document: dict[str, Any] = {
        "name": args.name or args.command,
        "document": {"command": {"name": args.command, "args": arguments}},
        "targets": targets,
    }
    if args.update is not None:
        try:
            name, version = catalog.parse_ref(args.update)
        except ValueError as exc:
            raise MahavishnuError(f"--update {exc}") from None
        update = {"name": name, "version": version, "allow_downgrade": args.allow_downgrade}
        document.update(name=args.name or f"update {args.update}", document={"update": update})
    if args.max_per_minute is not None:
        document["pace"] = {"maximum_per_minute": args.max_per_minute}
    return document


async def _create(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    flags = (
        args.command is not None
        or args.update is not None
        or args.devices is not None
        or args.tag
        or args.max_per_minute is not None
    )
    if args.file is not None and flags:
        raise MahavishnuError("give a campaign file or the flags (--command or --update, --devices, ...), not both")
    if args.file is not None:
        spec = specfile.load(Path(args.file))
    else:
        spec = specfile.parse(flags_document(args), source=FLAGS)
    async with control_store(home, settings, "campaign") as store:
        campaign_id = await control.create(store, spec, actor=ACTOR)
    print(campaign_id)
    return 0


async def _step(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "campaign") as store:
        if args.campaign_command == "pause":
            await control.pause(store, args.id, actor=ACTOR)
            said = "paused"
        elif args.campaign_command == "resume":
            await control.resume(store, args.id, actor=ACTOR)
            said = "resumed"
        else:
            wave = await control.next_wave(store, args.id, actor=ACTOR)
            said = f"opened wave {wave}"
    print(f"{args.id}: {said}")
    return 0


async def _cancel(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "campaign") as store:
        await control.cancel(store, args.id, actor=ACTOR, force=args.force)
    print(f"{args.id}: canceled{' (executions in progress too)' if args.force else ''}")
    return 0


async def _list(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    request: dict[str, Any] = {}
    async with control_store(home, settings, "campaign") as store:
        while True:
            page = await query(store.nc, "campaigns.list", request)
            for campaign in page["campaigns"]:
                print(json.dumps(campaign) if args.json else campaign_line(campaign))
            if not page.get("next"):
                return 0
            request["after"] = page["next"]


async def _show(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "campaign") as store:
        answer = await query(store.nc, "campaigns.get", {"id": args.id})
    print(json.dumps(answer, indent=2) if args.json else campaign_text(answer["campaign"]))
    return 0


def counts_text(counts: dict[str, Any]) -> str:
    """ "5/100 succeeded, 2 failed, 90 pending": the non-zero counts, succeeded against all targets (pure)."""
    total = sum(int(counts.get(state, 0)) for state in (*STATES, "pending"))
    parts = [f"{counts.get('succeeded', 0)}/{total} succeeded"]
    parts += [
        f"{counts[state]} {state}" for state in (*STATES, "pending") if state != "succeeded" and counts.get(state)
    ]
    return ", ".join(parts)


def campaign_line(campaign: dict[str, Any]) -> str:
    """One campaign as `campaign list` prints it (pure): id, status, name, counts, when and by whom, the rule."""
    fields = [
        campaign["id"],
        campaign["status"],
        campaign["name"],
        counts_text(campaign.get("counts") or {}),
        f"created {campaign.get('created_at') or '-'} by {campaign.get('created_by') or '-'}",
    ]
    if campaign.get("rule"):
        fields.append(f"rule {campaign['rule']}")
    return "  ".join(fields)


def campaign_text(campaign: dict[str, Any]) -> str:
    """One campaign as `campaign show` prints it (pure): its status, counts per state and per wave, the rule."""
    lines = [f"{campaign['id']}  {campaign['name']}  {campaign['status']}"]
    if campaign.get("rule"):
        lines.append(f"rule: {campaign['rule']}")
    if campaign.get("reason"):
        lines.append(f"reason: {campaign['reason']}")
    when = [(label, campaign.get(key)) for label, key in (("created", "created_at"), ("started", "started_at"))]
    when.append(("ended", campaign.get("ended_at")))
    lines.append("  ".join(f"{label} {moment}" for label, moment in when if moment))
    if campaign.get("created_by"):
        lines[-1] += f"  by {campaign['created_by']}"
    counts = campaign.get("counts") or {}
    lines.append(f"counts: {counts_text(counts)}")
    lines.append("  ".join(f"{state} {counts.get(state, 0)}" for state in ("pending", *STATES)))
    waves = campaign.get("waves") or []
    if len(waves) > 1 or (waves and waves[0].get("name")):
        lines.append("waves:")
        width = max(len(_wave_name(wave)) for wave in waves)
        for wave in waves:
            state = "open" if wave.get("open") else "closed"
            lines.append(f"  {_wave_name(wave):<{width}}  {state:<6}  {_wave_counts(wave)}")
    return "\n".join(lines)


def _wave_name(wave: dict[str, Any]) -> str:
    return f"{wave['wave']} {wave['name']}" if wave.get("name") else str(wave["wave"])


def _wave_counts(wave: dict[str, Any]) -> str:
    targets = int(wave.get("targets", 0))
    parts = [f"{wave.get('succeeded', 0)}/{targets} succeeded"]
    parts += [f"{wave[state]} {state}" for state in STATES if state != "succeeded" and wave.get(state)]
    return ", ".join(parts)
