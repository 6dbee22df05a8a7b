"""Enrolling, listing, revoking and rotating devices: certificates, consumer and events.

Every change follows the same order: the CA decides (certs), the server learns of it, the
device's command consumer is ensured, and the change is recorded as an event. A NATS
device is admitted by up's identity service, which reads the CA's revocation list at
every connection and cuts off a revoked device's live connections on its DeviceRevoked
event (ADR 0012): its enrolment changes no server configuration. An MQTT device too: the
identity service admits it on the MQTT listener, under its own client id (ADR 0008).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from certs import (
    CertificateAuthority,
    IssuedCertificate,
    IssuedRecord,
    NotIssuedError,
    RevocationEntry,
    validate_identity,
)
from certs.build import csr_public_key
from core import subjects
from core.config import Settings
from core.errors import ConcurrencyConflict, MahavishnuError
from core.events import (
    SEALED_DEVICE_FIELDS,
    CommandIssued,
    DesiredStateSet,
    DeviceEnrolled,
    DeviceHeartbeat,
    DeviceRevoked,
    DeviceRotated,
    Sealed,
)
from core.sealing import DataKey, device_subject, seal
from core.store import EventStore
from core.updates.naming import TRUSTED_ROOT
from edge import render_agent_config
from mahavishnu.control.permissions import COMMANDS_STREAM
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.runtime.home import Home
from mahavishnu.sites import hub as sites
from mahavishnu.updates.trust.local import TrustFiles

ACK_WAIT_S = 30.0
MAX_DELIVER = 5
TRANSPORTS = ("nats", "mqtt")


@dataclass(frozen=True)
class Enrolment:
    issued: IssuedCertificate
    agent_config: Path


def consumer_config(device_id: str, ack_wait_s: float = ACK_WAIT_S) -> dict[str, object]:
    """The durable pull consumer of a device's commands (pure): explicit acks, ack wait, max deliver, backoff.

    With a backoff list JetStream takes its first entry as the ack wait, so the list starts
    at `ack_wait_s` and doubles: a command the agent neither acknowledged nor reported in
    progress comes back after ack_wait, then twice and four times that, up to MAX_DELIVER.

    One replica, also on a cluster whose COMMANDS stream has three: a replicated consumer
    is a Raft group of its own, and 1,000 of them took 12.7% of a core per node, idle
    (10,000 with one replica: 0.5%; bench/consumers.py, ADR 0012). The commands themselves
    stay replicated; a device whose consumer's node is down gets them when it is back.
    """
    return {
        "num_replicas": 1,
        "filter_subject": subjects.device_commands(device_id),
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": int(ack_wait_s * 1e9),
        "max_deliver": MAX_DELIVER,
        "backoff": [int(ack_wait_s * factor * 1e9) for factor in (1, 2, 4)],
        "replay_policy": "instant",
    }


def agent_toml(device_id: str, url: str, *, ack_wait_s: float = ACK_WAIT_S) -> str:
    """agent.toml for a device whose ca.pem, cert.pem and key.pem sit beside it (pure)."""
    return render_agent_config(
        device_id=device_id,
        servers=[url],
        ca="ca.pem",
        cert="cert.pem",
        key="key.pem",
        ack_wait=ack_wait_s,
        max_deliver=MAX_DELIVER,
        backoff=(ack_wait_s, 2 * ack_wait_s, 4 * ack_wait_s),
    )


def load_ca(home: Home) -> CertificateAuthority:
    return CertificateAuthority.load(home.ca_dir)


# One change of the CA at a time in this process: a change reads the registry, checks it
# (a live certificate for the id already?) and appends to it, and two at once could both
# pass the check. Changes run off the event loop: each writes and syncs files (cert.pem,
# issued.jsonl), and up's provisioning service enrolling a batch spent a third of its
# loop's time waiting on those fsyncs (bench/fleet.py), holding up every other request.
_CA_CHANGES = threading.Lock()
T = TypeVar("T")


async def _ca_change(
    home: Home, change: Callable[[CertificateAuthority], T], *, then: Callable[[T], object] | None = None
) -> tuple[CertificateAuthority, T]:
    """`change(ca)` on a fresh load of the CA, alone among this process's changes, on a worker thread;
    then `then(result)` on the same thread, no longer alone."""

    def alone() -> tuple[CertificateAuthority, T]:
        with _CA_CHANGES:
            ca = load_ca(home)
            result = change(ca)
        if then is not None:
            then(result)  # outside the lock: the next change need not wait for it (e.g. a disk's fsyncs)
        return ca, result

    return await asyncio.to_thread(alone)


async def enroll(
    home: Home,
    settings: Settings,
    store: EventStore,
    device_id: str,
    *,
    out_dir: Path,
    csr_pem: bytes | None = None,
    ack_wait_s: float = ACK_WAIT_S,
    url: str | None = None,
    transport: str = "nats",
    personal: Mapping[str, str] | None = None,
    site: str | None = None,
) -> Enrolment:
    """Issue the device's certificate (from its CSR, or with a new key), let the server accept it, record it.

    The agent.toml written beside the files points at `url` (default: the configured server,
    or with `site` the edge site's server, whose bundle then holds the device's user).
    With `transport` "mqtt" the device speaks MQTT only: its user goes to the MQTT account
    (mahavishnu.gateways.mqtt.devices) and `up`'s bridge serves its commands; the agent.toml is still written,
    for a device that may later run the agent, but its certificate opens the MQTT listener only.
    `personal` holds the device's personal fields (core.events.SEALED_DEVICE_FIELDS, e.g.
    owner and location): they go into the event only sealed with the device's data key,
    made here, so `mahavishnu erase device` can make them unreadable later.
    """
    validate_identity(device_id)
    personal = {name: value for name, value in (personal or {}).items() if value}
    unknown = sorted(set(personal) - set(SEALED_DEVICE_FIELDS))
    if unknown:
        raise MahavishnuError(
            f"unknown personal field(s) {', '.join(unknown)}: a device has {', '.join(SEALED_DEVICE_FIELDS)}"
        )
    if transport not in TRANSPORTS:
        raise MahavishnuError(f"unknown transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
    if transport == "mqtt" and site is not None:
        raise MahavishnuError("edge sites have no MQTT listener yet: enrol an MQTT device without --site")
    if site is not None:
        url = url or sites.find(home, site).device_url  # an unknown site fails before anything is issued

    def issue(ca: CertificateAuthority) -> IssuedCertificate:
        if transport == "mqtt":
            if csr_pem is not None:  # a CSR the CA would refuse leaves no registration behind
                csr_public_key(csr_pem, device_id)
            if device_id not in mqtt.registered(home.root) and any(r.identity == device_id for r in ca.issued()):
                raise MahavishnuError(
                    f"{device_id!r} is already enrolled as a NATS device: enrol the MQTT device under another id"
                )
            mqtt.register(home.root, device_id)  # before its certificate exists: the callout admits it to MQTT only
        # The CA's record is on disk before the next change; the device's files are forced
        # to disk after it (`then`), still before anyone is given them: at tens of
        # enrolments a second the CA's lock waited mostly for these fsyncs.
        issued = ca.issue_client(
            device_id,
            kind="device",
            out_dir=out_dir,
            days=settings.certs.client_days,
            csr_pem=csr_pem,
            sync_files=False,
        )
        # with the certificate, so that whoever finds cert.pem finds agent.toml beside it
        config.write_text(agent_toml(device_id, url or home.client_url(settings), ack_wait_s=ack_wait_s))
        # and the root of the update metadata the device will trust (ADR 0016), once the mesh has one
        root = TrustFiles.of(home.root).current_root()
        if root is not None:
            (out_dir / TRUSTED_ROOT).parent.mkdir(exist_ok=True)
            (out_dir / TRUSTED_ROOT).write_bytes(root)
        return issued

    config = out_dir / "agent.toml"
    ca, issued = await _ca_change(home, issue, then=IssuedCertificate.sync)
    if site is not None:
        sites.assign_device(home, site, device_id)
    await _apply(home, ca, store, device_id, ack_wait_s)
    # always: the first event with personal data is sealed (off the loop: the key file is synced to disk)
    key = await asyncio.to_thread(home.data_keys.create, device_subject(device_id))
    enrolled = DeviceEnrolled(
        device_id=device_id,
        serial=f"{issued.serial:x}",
        fingerprint_sha256=issued.fingerprint_sha256,
        not_after=issued.not_after,
        transport=transport,
        site=site or "",
        actor="control",
    )
    await store.append(msgspec.structs.replace(enrolled, **sealed_fields(key, device_id, personal)))
    await store.audit.record(
        actor="control",
        category="identity",
        action="device.enroll",
        target=device_id,
        # the names of the personal fields only: the audit trail cannot be erased
        details={
            "serial": f"{issued.serial:x}",
            "from_csr": csr_pem is not None,
            "personal": sorted(personal),
            "transport": transport,
        },
    )
    return Enrolment(issued, config)


def sealed_fields(key: DataKey, device_id: str, personal: Mapping[str, str]) -> dict[str, Sealed]:
    """Each personal field sealed with the device's key, bound to the device and the field's name (pure)."""
    subject = device_subject(device_id)
    return {name: seal(key, value, subject=subject, field=name) for name, value in personal.items()}


async def revoke(home: Home, store: EventStore, device_id: str, *, reason: str = "unspecified") -> list[int]:
    """Revoke every certificate of the device; the server drops its connections and refuses it from now on."""

    def revoke_all(ca: CertificateAuthority) -> list[RevocationEntry]:
        _require_device(ca, device_id)
        return ca.revoke(device_id, reason=reason)

    ca, entries = await _ca_change(home, revoke_all)
    await _apply(home, ca, store, device_id)
    await store.append(
        DeviceRevoked(device_id=device_id, serials=[f"{e.serial:x}" for e in entries], reason=reason, actor="control")
    )
    await store.audit.record(
        actor="control", category="identity", action="device.revoke", target=device_id, details={"reason": reason}
    )
    return [e.serial for e in entries]


async def rotate(
    home: Home, settings: Settings, store: EventStore, device_id: str, *, out_dir: Path, csr_pem: bytes | None = None
) -> IssuedCertificate:
    """Issue the device a new certificate; the old one stays valid until `complete_rotation`."""

    def rotate_one(ca: CertificateAuthority) -> tuple[IssuedRecord, IssuedCertificate]:
        old = _require_device(ca, device_id)
        return old, ca.rotate_client(device_id, out_dir=out_dir, days=settings.certs.client_days, csr_pem=csr_pem)

    ca, (old, issued) = await _ca_change(home, rotate_one)
    await _apply(home, ca, store, device_id)
    await store.append(
        DeviceRotated(
            device_id=device_id,
            old_serial=f"{old.serial:x}",
            new_serial=f"{issued.serial:x}",
            not_after=issued.not_after,
            actor="control",
        )
    )
    await store.audit.record(
        actor="control",
        category="identity",
        action="device.rotate",
        target=device_id,
        details={"new_serial": f"{issued.serial:x}"},
    )
    return issued


async def complete_rotation(home: Home, store: EventStore, device_id: str, *, force: bool = False) -> list[int]:
    """Revoke every certificate of the device but the newest, once its agent uses the new one.

    The agent says which certificate it uses in its heartbeats; RotationPending when the
    last heartbeat does not name the newest certificate (`force` revokes anyway).
    """
    ca = load_ca(home)
    newest = _require_device(ca, device_id)
    older = [r for r in ca.issued() if r.identity == device_id and not r.revoked and r.serial != newest.serial]
    if not older:
        raise NotIssuedError(f"{device_id} has no older certificate to revoke: nothing to complete")
    if not force:
        using = await _certificate_in_use(store, device_id)
        if using != newest.fingerprint_sha256:
            raise RotationPending(
                f"{device_id}'s agent has not switched to the new certificate yet "
                f"({'its last heartbeat names another one' if using else 'no heartbeat names one'}): "
                "install the new files on the device and restart its agent, or pass --force"
            )

    def revoke_older(ca: CertificateAuthority) -> None:
        for record in older:
            ca.revoke(device_id, serial=record.serial, reason="superseded")

    ca, _ = await _ca_change(home, revoke_older)
    await _apply(home, ca, store, device_id)
    await store.append(
        DeviceRevoked(
            device_id=device_id, serials=[f"{r.serial:x}" for r in older], reason="superseded", actor="control"
        )
    )
    return [r.serial for r in older]


class RotationPending(MahavishnuError):
    """The agent still uses its old certificate."""


async def _certificate_in_use(store: EventStore, device_id: str) -> str:
    """The certificate fingerprint named by the device's last heartbeat ("" if none)."""
    heartbeat = await store.last_event(subjects.device_event(device_id, "heartbeat"))
    return heartbeat.cert_fingerprint_sha256 if isinstance(heartbeat, DeviceHeartbeat) else ""


def devices(home: Home) -> dict[str, list[IssuedRecord]]:
    """Each device's certificates, oldest first, from the CA registry."""
    found: dict[str, list[IssuedRecord]] = {}
    for record in load_ca(home).issued():
        if record.kind == "device":
            found.setdefault(record.identity, []).append(record)
    return found


def _require_device(ca: CertificateAuthority, device_id: str) -> IssuedRecord:
    """The device's newest live certificate; NotIssuedError when it has none."""
    validate_identity(device_id)
    now = datetime.now(UTC)
    live = [r for r in ca.issued() if r.identity == device_id and r.kind == "device" and r.is_live(now)]
    if not live:
        raise NotIssuedError(f"no live certificate for device {device_id!r}: see `mahavishnu device list`")
    return live[-1]


async def _apply(
    home: Home, ca: CertificateAuthority, store: EventStore, device_id: str, ack_wait_s: float | None = None
) -> None:
    """Let the servers know; with `ack_wait_s`, (re)configure the device's consumer too."""
    # a site's device is a user of its site's leaf server: that bundle's users.conf changes
    if any(device_id in site.devices for site in sites.registered(home)):
        sites.refresh_bundles(home, ca)
    if ack_wait_s is not None:
        config = consumer_config(device_id, ack_wait_s)
        await store.ensure_durable(COMMANDS_STREAM, subjects.device_consumer(device_id), config)


async def desire(store: EventStore, device_id: str, state: dict[str, Any], *, actor: str = "control") -> int:
    """Set part of a device's desired configuration (the shadow) and send it the config.set commands.

    Merges into the previous desired state; returns the new version. Two operators changing
    it at once: the second gets ConcurrencyConflict (the expected subject sequence) and retries.
    """
    from mahavishnu.control import commands  # commands imports devices' neighbours; keep the import local

    subject = subjects.device_event(device_id, "desired")
    previous = await store.last_event(subject)
    seq = await store.last_subject_sequence(subject)
    before = previous if isinstance(previous, DesiredStateSet) else None
    event = DesiredStateSet(
        device_id=device_id,
        state={**(before.state if before else {}), **state},
        version=(before.version if before else 0) + 1,
        actor=actor,
    )
    await store.append(event, expected_last_subject_seq=seq)
    for key, value in state.items():
        await commands.send(
            store, device_id, "config.set", {"key": key, "value": value}, ttl_s=3600, timeout_s=5, actor=actor
        )
    await store.audit.record(
        actor=actor,
        category="command",
        action="device.desire",
        target=device_id,
        details={"keys": sorted(state), "version": event.version},
    )
    return event.version


async def desire_at_once(
    store: EventStore,
    device_id: str,
    state: dict[str, Any],
    *,
    command_id: str,
    ttl_s: float,
    timeout_s: float,
    actor: str,
) -> CommandIssued:
    """Merge `state` into the device's desired state and send it as one `config.apply` command, `command_id`.

    A campaign's execution is one command per device (`desire` sends one config.set per key).
    The desired state's event id derives from the command's, so a retry after a crash within
    the duplicate window records it once. ConcurrencyConflict three times in a row (operators
    changing the shadow meanwhile) propagates.
    """
    from mahavishnu.control import commands  # commands imports devices' neighbours; keep the import local

    subject = subjects.device_event(device_id, "desired")
    for tries_left in range(2, -1, -1):
        previous = await store.last_event(subject)
        seq = await store.last_subject_sequence(subject)
        before = previous if isinstance(previous, DesiredStateSet) else None
        event = DesiredStateSet(
            event_id=f"{command_id}.desired",
            device_id=device_id,
            state={**(before.state if before else {}), **state},
            version=(before.version if before else 0) + 1,
            actor=actor,
            correlation_id=command_id,
        )
        try:
            await store.append(event, expected_last_subject_seq=seq)
            break
        except ConcurrencyConflict:
            if not tries_left:
                raise
    return await commands.send(
        store,
        device_id,
        "config.apply",
        {"values": state},
        ttl_s=ttl_s,
        timeout_s=timeout_s,
        actor=actor,
        command_id=command_id,
    )
