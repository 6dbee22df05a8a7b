"""`mahavishnu device ...`: enrol (one, or a batch from a CSV), list, tag, show, revoke and rotate devices."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from core.config import Settings
from core.errors import MahavishnuError, StoreError
from core.store import EventStore
from core.tags import parse_tags
from mahavishnu.cli import device_ssh
from mahavishnu.cli.mesh import control_store
from mahavishnu.control import devices, tags
from mahavishnu.runtime.home import Home
from projections.authz import CONTROL
from projections.database import database_key
from projections.device_queries import PAGE_MAX, DeviceList, devices_list
from projections.devices import TRANSPORTS
from projections.reading import ReadModels


def add(device: argparse.ArgumentParser) -> None:
    actions = device.add_subparsers(dest="device_command", required=True, metavar="ACTION")

    enroll = actions.add_parser("enroll", help="issue a device its certificate and agent.toml (or a batch: --bulk)")
    enroll.add_argument("id", nargs="?", help="device id: [a-z0-9][a-z0-9-]{0,62}")
    enroll.add_argument(
        "--bulk", metavar="FILE.csv", help="enrol every row of id[,transport][,site][,tags k=v;k2=v2] into --out/ID"
    )
    enroll.add_argument("--csr", help="sign this CSR (made on the device) instead of making a key here")
    enroll.add_argument("--out", help="folder for ca.pem, cert.pem, key.pem, agent.toml (default HOME/devices/ID)")
    enroll.add_argument(
        "--transport",
        choices=devices.TRANSPORTS,
        help="nats: runs the agent (default); mqtt: speaks MQTT 3.1.1 only, served by up's MQTT bridge",
    )
    enroll.add_argument("--owner", help="who the device belongs to (personal: sealed, erasable)")
    enroll.add_argument("--location", help="where it is (personal: sealed, erasable)")
    enroll.add_argument("--site", help="the device connects to this edge site's server (see `mahavishnu site list`)")
    enroll.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="label the device (repeatable), e.g. rack=r7"
    )
    enroll.set_defaults(handler=_enroll)

    listing = actions.add_parser("list", help="the fleet from the devices read model, in id order, a page at a time")
    listing.add_argument("--limit", type=int, help="devices wanted (default: every match)")
    listing.add_argument("--presence", choices=("online", "offline"), help="heard from in the last 90 s, or not")
    listing.add_argument("--site", help="devices of this edge site")
    listing.add_argument("--transport", choices=TRANSPORTS, help="agent (over NATS), mqtt or ssh")
    listing.add_argument("--tag", metavar="KEY=VALUE", help="devices with this tag")
    listing.add_argument("--json", action="store_true", help="one JSON document per device")
    listing.set_defaults(handler=_list)

    tag = actions.add_parser("tag", help="set or remove a device's tags (key=value labels to filter by)")
    tag.add_argument("id")
    tag.add_argument("tags", nargs="*", metavar="KEY=VALUE", help="tags to set; a key's new value replaces its old")
    tag.add_argument("--remove", action="append", default=[], metavar="KEY", help="a tag key to remove (repeatable)")
    tag.set_defaults(handler=_tag)

    certificates = actions.add_parser("certificates", help="every device and the state of its certificates")
    certificates.set_defaults(handler=_certificates)

    show = actions.add_parser("show", help="one device's certificates, as JSON")
    show.add_argument("id")
    show.set_defaults(handler=_show)

    revoke = actions.add_parser("revoke", help="revoke a device: its connections are closed, it cannot return")
    revoke.add_argument("id")
    revoke.add_argument("--reason", default="unspecified", help="e.g. key_compromise, cessation_of_operation")
    revoke.set_defaults(handler=_revoke)

    rotate = actions.add_parser("rotate", help="issue a new certificate; --complete revokes the old one")
    rotate.add_argument("id")
    rotate.add_argument("--csr", help="sign this CSR instead of making a key here")
    rotate.add_argument("--out", help="folder for the new files (default HOME/devices/ID-next)")
    rotate.add_argument("--complete", action="store_true", help="the agent uses the new certificate: revoke the old")
    rotate.add_argument(
        "--force", action="store_true", help="with --complete: revoke even if no heartbeat shows the switch"
    )
    rotate.set_defaults(handler=_rotate)

    desire = actions.add_parser("desire", help="set desired configuration (the shadow); the agent is told")
    desire.add_argument("id")
    desire.add_argument("--state", required=True, help="JSON object of configuration values, e.g. '{\"rate\": 5}'")
    desire.set_defaults(handler=_desire)
    device_ssh.add_action(actions)  # add-ssh: hosts reached over SSH, without an agent


async def _enroll(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    if args.bulk is not None:
        return await _enroll_bulk(home, settings, args)
    if args.id is None:
        raise MahavishnuError("give the device's id, or --bulk FILE.csv for a batch")
    args.transport = args.transport or "nats"
    labels = parse_tags(args.tag)  # a bad tag fails before anything is issued
    async with control_store(home, settings, "device") as store:
        out = Path(args.out) if args.out else home.root / "devices" / args.id
        csr = _read_csr(args.csr)
        personal = {"owner": args.owner, "location": args.location}
        done = await devices.enroll(
            home,
            settings,
            store,
            args.id,
            out_dir=out,
            csr_pem=csr,
            personal=personal,
            site=args.site,
            transport=args.transport,
        )
        if labels:
            await _tag_enrolled(store, args.id, labels)
    if args.transport == "mqtt":
        print(f"enrolled {args.id} (MQTT): serial {done.issued.serial:x}, files in {out}")
        print(mqtt_usage(args.id, out, settings))
    else:
        print(f"enrolled {args.id}: serial {done.issued.serial:x}, files in {out}, config {done.agent_config}")
    if args.site:
        from mahavishnu.sites.hub import SITE_FILE, USERS_FILE, bundle_dir

        folder = bundle_dir(home, args.site)
        print(
            f"device of site {args.site}: copy {folder / SITE_FILE} and {folder / USERS_FILE} into the site's "
            "bundle folder on its host; a running `mahavishnu site up` applies them at once"
        )
    return 0


async def _enroll_bulk(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.cli.device_bulk import enroll_all

    per_device = {"ID": args.id, "--csr": args.csr, "--owner": args.owner, "--location": args.location}
    per_device |= {"--transport": args.transport, "--site": args.site, "--tag": args.tag or None}
    given = [option for option, value in per_device.items() if value is not None]
    if given:
        raise MahavishnuError(f"--bulk takes each device's fields from its row: leave out {', '.join(given)}")
    out = Path(args.out) if args.out else home.root / "devices"
    enrolled, failed = await enroll_all(home, settings, Path(args.bulk), out)
    print(f"enrolled {enrolled} device(s) into {out}/ID")
    if failed:
        lines = ", ".join(str(row.line) for row in failed)
        raise MahavishnuError(f"{len(failed)} row(s) failed (line {lines}): fix them and enrol those rows again")
    return 0


async def _tag_enrolled(store: EventStore, device_id: str, labels: dict[str, str]) -> None:
    """The tags of a device just enrolled; if the streams refuse them, the enrolment stands and says how to retry."""
    try:
        await tags.tag(store, device_id, labels, actor="control")
    except StoreError as exc:
        again = " ".join(f"{key}={value}" for key, value in labels.items())
        raise MahavishnuError(
            f"{device_id} is enrolled, but its tags were not recorded ({exc}): "
            f"run `mahavishnu device tag {device_id} {again}`"
        ) from exc


async def _tag(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    labels = parse_tags(args.tags)
    async with control_store(home, settings, "device") as store:
        event = await tags.tag(store, args.id, labels, args.remove, actor="control")
    changes = [f"{key}={value}" for key, value in event.tags.items()] + [f"-{key}" for key in event.removed]
    print(f"tagged {args.id}: {' '.join(changes)}")
    return 0


async def _list(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise MahavishnuError(f"--limit must be 1 or more, not {args.limit}")
    # on the control host, with the read models' key: the control identity's role (admin)
    models = ReadModels(home.readmodels_dir, database_key(home.root, os.environ), role=CONTROL.role)
    async for device in listed(models, args):
        print(json.dumps(device) if args.json else device_line(device))
    return 0


async def listed(models: ReadModels, args: argparse.Namespace) -> AsyncIterator[dict[str, Any]]:
    """Up to --limit matching devices (every one without it), in id order, following the list's pages."""
    wanted: int | None = args.limit
    after: str | None = None
    fields = {"presence": args.presence, "site": args.site, "transport": args.transport, "tag": args.tag}
    while wanted is None or wanted > 0:
        try:  # converted, not constructed: the request type's own checks (a site's name) apply
            request = msgspec.convert(
                {**fields, "after": after, "limit": min(wanted or PAGE_MAX, PAGE_MAX)}, DeviceList
            )
        except msgspec.ValidationError as exc:
            raise MahavishnuError(f"bad filter: {exc}") from None
        page = msgspec.json.decode(await devices_list(models, request))
        for device in page["devices"]:
            yield device
        if wanted is not None:
            wanted -= len(page["devices"])
        after = page["next"]
        if after is None:
            return


def device_line(device: dict[str, Any]) -> str:
    """One device as `device list` prints it (pure): id, status, presence, transport, site, last seen, tags."""
    tags_text = ",".join(f"{key}={value}" for key, value in device["tags"].items())
    seen = f"seen {device['last_seen']}" if device["last_seen"] else "never seen"
    fields = [device["device_id"], device["status"], device["presence"], device["transport"] or "-"]
    fields += [f"site {device['site']}" if device["site"] else "no site", seen, tags_text]
    return "  ".join(fields).rstrip()


async def _certificates(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    from mahavishnu.gateways.mqtt import devices as mqtt

    now = datetime.now(UTC)
    over_mqtt = mqtt.registered(home.root)
    for device_id, records in sorted(devices.devices(home).items()):
        live = [r for r in records if r.is_live(now)]
        state = f"live ({len(live)} certificate{'s' if len(live) != 1 else ''})" if live else "revoked"
        newest = records[-1]
        transport = "  mqtt" if device_id in over_mqtt else ""
        print(f"{device_id}  {state}  newest serial {newest.serial:x} until {newest.not_after:%Y-%m-%d}{transport}")
    return 0


async def _show(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    records = devices.devices(home).get(args.id)
    if records is None:
        from certs import NotIssuedError

        raise NotIssuedError(f"no device {args.id!r}: see `mahavishnu device list`")
    now = datetime.now(UTC)
    document = {
        "id": args.id,
        "certificates": [
            {
                "serial": f"{r.serial:x}",
                "not_after": r.not_after.isoformat(),
                "fingerprint_sha256": r.fingerprint_sha256,
                "state": "live" if r.is_live(now) else "revoked" if r.revoked else "expired",
            }
            for r in records
        ],
    }
    print(json.dumps(document, indent=2))
    return 0


async def _revoke(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "device") as store:
        serials = await devices.revoke(home, store, args.id, reason=args.reason)
    print(f"revoked {args.id}: serial(s) {', '.join(f'{s:x}' for s in serials)}; its connections are closed")
    return 0


async def _rotate(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    async with control_store(home, settings, "device") as store:
        if args.complete:
            serials = await devices.complete_rotation(home, store, args.id, force=args.force)
            print(f"rotation of {args.id} complete: revoked old serial(s) {', '.join(f'{s:x}' for s in serials)}")
            return 0
        out = Path(args.out) if args.out else home.root / "devices" / f"{args.id}-next"
        csr = _read_csr(args.csr)
        issued = await devices.rotate(home, settings, store, args.id, out_dir=out, csr_pem=csr)
    print(
        f"new certificate for {args.id}: serial {issued.serial:x} in {out}; the old one stays valid until "
        f"`mahavishnu device rotate {args.id} --complete`"
    )
    return 0


async def _desire(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    try:
        state = json.loads(args.state)
    except json.JSONDecodeError as exc:
        raise MahavishnuError(f"--state is not JSON ({exc.msg}): pass an object like '{{\"rate\": 5}}'") from None
    if not isinstance(state, dict) or not state:
        raise MahavishnuError("--state must be a non-empty JSON object")
    async with control_store(home, settings, "device") as store:
        version = await devices.desire(store, args.id, state)
    print(f"desired state of {args.id} is now version {version}; config.set sent for {', '.join(sorted(state))}")
    return 0


def mqtt_usage(device_id: str, folder: Path, settings: Settings) -> str:
    """How an MQTT device connects, with its own files (pure)."""
    port = settings.mqtt.port or "<[mqtt] port: MQTT is off, set it and restart up>"
    tls = f"--cafile {folder}/ca.pem --cert {folder}/cert.pem --key {folder}/key.pem -h {settings.mqtt.host} -p {port}"
    return "\n".join(
        [
            f"  commands:  mosquitto_sub {tls} -i {device_id} -c -q 1 -t 'mesh/cmd/{device_id}/#'",
            # A publisher beside the command session: its own client id, so it neither takes over nor
            # (clean session) wipes the session that keeps the device's commands (ADR 0008).
            f"  telemetry: mosquitto_pub {tls} -i {device_id}/pub -q 1 -t mesh/evt/device/{device_id}/telemetry"
            " -m '{\"temp_c\": 41.5}'",
            f"  results:   mosquitto_pub {tls} -i {device_id}/pub -q 1 -t mesh/evt/device/{device_id}/command"
            ' -m \'{"command_id": "c-...", "state": "succeeded", "result": {}}\'',
        ]
    )


def _read_csr(path: str | None) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise MahavishnuError(
            f"cannot read the CSR {path}: {exc.strerror}; make one with `mahavishnu agent csr`"
        ) from exc
