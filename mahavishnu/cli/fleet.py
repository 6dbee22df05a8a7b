"""`mahavishnu fleet claim create|list|show|revoke`: claims, with which a batch of devices provisions itself.

A claim file goes to the devices of one batch; each runs `mahavishnu agent provision
--claim FILE --id ID --out DIR` and gets its certificate from up's provisioning service
(mahavishnu.identity.provisioning). What a claim may still do is the stream's to say:
`list` and `show` fold its events.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.config import Settings
from core.errors import MahavishnuError
from core.tags import parse_tags
from core.units import parse_duration
from mahavishnu.cli.mesh import control_store
from mahavishnu.control.devices import TRANSPORTS
from mahavishnu.identity import claiming
from mahavishnu.identity.claimfile import device_id, named
from mahavishnu.identity.claims import Claim
from mahavishnu.runtime.home import Home


def add(fleet: argparse.ArgumentParser) -> None:
    things = fleet.add_subparsers(dest="fleet_command", required=True, metavar="THING")
    claim = things.add_parser("claim", help="claims: bootstrap credentials with which a batch provisions itself")
    actions = claim.add_subparsers(dest="claim_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="make a claim for PREFIX + 0..COUNT-1 and write its file (0600)")
    create.add_argument("--prefix", required=True, help="the ids' prefix, e.g. sensor- (ids sensor-00, sensor-01, ...)")
    create.add_argument("--count", required=True, type=int, help="how many ids it names")
    create.add_argument("--ttl", required=True, help="how long it may be used, e.g. 7d, 12h")
    create.add_argument("--uses", type=int, help="how many devices it may provision in all (default: --count)")
    create.add_argument("--site", help="its devices connect to this edge site's server")
    create.add_argument("--transport", choices=TRANSPORTS, default="nats", help="nats (the agent, default) or mqtt")
    create.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="a tag of every device it provisions"
    )
    create.add_argument("--out", help="the claim file (default HOME/claims/CLAIM.json)")
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="every claim: its state, its ids, its uses")
    listing.add_argument("--json", action="store_true", help="one JSON document per claim")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="one claim, as JSON (its devices too; never its key)")
    show.add_argument("id")
    show.set_defaults(handler=_show)

    revoke = actions.add_parser("revoke", help="revoke a claim: it provisions nothing more, its connections are cut")
    revoke.add_argument("id")
    revoke.add_argument("--reason", default="unspecified", help="e.g. key_compromise, cessation_of_operation")
    revoke.set_defaults(handler=_revoke)


def ttl_of(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError as exc:
        raise MahavishnuError(f"--ttl: {exc}") from None


async def _create(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    ttl, labels = ttl_of(args.ttl), parse_tags(args.tag)  # mistakes fail before anything is issued
    async with control_store(home, settings, "fleet") as store:
        created = await claiming.create(
            home,
            settings,
            store,
            prefix=args.prefix,
            count=args.count,
            ttl=ttl,
            uses=args.uses,
            site=args.site,
            transport=args.transport,
            tags=labels,
            out=Path(args.out) if args.out else None,
        )
    event = created.event
    print(
        f"claim {event.claim_id}: devices {named(event.prefix, event.count)}, {event.uses} uses, "
        f"until {event.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    print(f"  file      {created.path} (0600: it holds the claim's key; give it to the batch's devices only)")
    first = device_id(event.prefix, 0, event.count)
    print(f"  a device  mahavishnu agent provision --claim {created.path.name} --id {first} --out DIR")
    return 0


async def _list(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "fleet") as store:
        claims = await claiming.read_claims(store)
    now = datetime.now(UTC)
    for claim in sorted(claims.values(), key=lambda c: c.expires_at):
        print(json.dumps(claiming.describe(claim, now)) if args.json else claim_line(claim, now))
    return 0


def claim_line(claim: Claim, now: datetime) -> str:
    """One claim as `fleet claim list` prints it (pure)."""
    tags = ",".join(f"{key}={value}" for key, value in claim.tags)
    fields = [
        claim.claim_id,
        claim.state(now).value,
        named(claim.prefix, claim.count),
        f"{claim.used}/{claim.uses} used",
        f"until {claim.expires_at:%Y-%m-%d %H:%M}",
        f"site {claim.site}" if claim.site else "no site",
        tags,
    ]
    return "  ".join(fields).rstrip()


async def _show(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "fleet") as store:
        claim = await claiming.read_claim(store, args.id)
    print(json.dumps(claiming.describe(claim, datetime.now(UTC)), indent=2))
    return 0


async def _revoke(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "fleet") as store:
        await claiming.revoke(home, store, args.id, reason=args.reason)
    print(
        f"revoked claim {args.id}: it provisions nothing more; the mesh refuses its certificate and "
        "the running `up` cuts off its connections (devices it provisioned keep their own certificates)"
    )
    return 0
