"""Device identity enforced by nats-server: enrolment, confinement, revocation and rotation, on a real server."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.aio.client import Client

from certs import make_key_and_csr
from core import subjects
from core.errors import StoreUnavailable
from core.events import CommandIssued, DeviceEnrolled, DeviceRevoked, DeviceRotated, TelemetryReported
from core.store import EventStore, Identity, connect
from mahavishnu.control import devices
from tests.harness import Mesh
from tests.waiting import eventually


def reloads(mesh: Mesh) -> int:
    return sum("Reloaded server configuration" in line for line in mesh.server.recent)


async def enroll(mesh: Mesh, store: EventStore, out: Path, device_id: str, csr: bytes | None = None) -> Identity:
    """Enrol a device; the identity service admits it at once, with no change to the server's configuration."""
    before = reloads(mesh)
    users = mesh.home.users_include.read_text()
    await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=out, csr_pem=csr)
    assert mesh.home.users_include.read_text() == users
    assert reloads(mesh) == before
    return Identity(mesh.identity.url, out / "ca.pem", out / "cert.pem", out / "key.pem")


@dataclass
class Device:
    device_id: str
    nc: Client
    errors: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e.lower()]


async def open_device(identity: Identity, device_id: str) -> Device:
    errors: list[str] = []

    async def collect(error: Exception) -> None:
        errors.append(str(error))

    nc = await connect(
        identity,
        name=device_id,
        reconnect=False,
        error_cb=collect,
        inbox_prefix=subjects.device_inbox_prefix(device_id),
    )
    return Device(device_id, nc, errors)


@pytest.fixture
async def device(mesh: Mesh, store: EventStore, tmp_path: Path) -> AsyncIterator[Device]:
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    identity = await enroll(mesh, store, tmp_path / device_id, device_id)
    opened = await open_device(identity, device_id)
    yield opened
    if not opened.nc.is_closed:
        await opened.nc.close()


async def test_enrolment_writes_the_files_and_records_the_event(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    await enroll(mesh, store, tmp_path / "dev-files", "dev-files")
    assert sorted(p.name for p in (tmp_path / "dev-files").iterdir()) == ["agent.toml", "ca.pem", "cert.pem", "key.pem"]
    assert (tmp_path / "dev-files" / "key.pem").stat().st_mode & 0o077 == 0
    assert 'device_id = "dev-files"' in (tmp_path / "dev-files" / "agent.toml").read_text()
    events = [s.event async for s in store.read(subjects.device_events("dev-files"))]
    assert [type(e) for e in events] == [DeviceEnrolled]


async def test_a_device_enrolled_from_its_csr_connects(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    key_path, csr_path = make_key_and_csr("dev-csr", tmp_path / "on-device", "ecdsa-p256")
    identity = await enroll(mesh, store, tmp_path / "on-device", "dev-csr", csr=csr_path.read_bytes())
    assert identity.key == key_path  # the key never left the device's folder
    opened = await open_device(identity, "dev-csr")
    await opened.nc.close()


async def test_a_device_may_append_its_own_events(device: Device, store: EventStore) -> None:
    event = TelemetryReported(device_id=device.device_id, metrics={"t": 1.0}, actor=device.device_id)
    [appended] = await EventStore(device.nc).append(event)
    assert appended.seq > 0
    assert [s.event async for s in store.read(event.subject())] == [event]


async def test_a_device_pulls_and_acknowledges_its_own_commands(device: Device, store: EventStore) -> None:
    command = CommandIssued(command_id="c-1", device_id=device.device_id, name="ping")
    await store.append(command)
    consumer = subjects.device_consumer(device.device_id)
    # A pulled message arrives under its own subject, so it is read from a subscription on the
    # inbox the pull request named (not through request(), which matches replies by subject).
    inbox = device.nc.new_inbox()
    assert inbox.startswith(subjects.device_inbox_prefix(device.device_id) + ".")
    sub = await device.nc.subscribe(inbox)
    await device.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.COMMANDS.{consumer}", b'{"batch": 1}', reply=inbox)
    delivery = await sub.next_msg(timeout=5)
    assert delivery.subject == command.subject()
    assert delivery.reply.startswith(f"$JS.ACK.COMMANDS.{consumer}.")
    await device.nc.request(delivery.reply, b"+ACK", timeout=5)  # an ack with a reply is confirmed by the server
    info = json.loads((await store.nc.request(f"$JS.API.CONSUMER.INFO.COMMANDS.{consumer}", b"")).data)
    assert info["num_ack_pending"] == 0 and info["delivered"]["consumer_seq"] == 1
    assert device.violations() == []


FORBIDDEN = [
    ("publish", "mesh.evt.device.someone-else.telemetry", "another device's events"),
    ("publish", "mesh.evt.device.{me}.revoked", "forging its own revocation"),
    ("publish", "mesh.evt.device.{me}.tagged", "tagging itself"),
    ("publish", "mesh.evt.device.{me}.desired", "setting its own desired state"),
    ("publish", "mesh.cmd.{me}.c-9", "sending commands"),
    ("publish", "$JS.API.CONSUMER.MSG.NEXT.COMMANDS.device-someone-else", "another device's consumer"),
    ("publish", "$JS.ACK.COMMANDS.device-someone-else.1.1.1.1.1", "acknowledging for another device"),
    ("publish", "$JS.API.STREAM.INFO.EVENTS", "the JetStream management API"),
    ("publish", "$JS.API.STREAM.DELETE.EVENTS", "deleting a stream"),
    ("publish", "$SYS.REQ.SERVER.PING", "the system account"),
    ("publish", "mesh.q.devices.list", "querying the read models"),
    ("subscribe", "_INBOX.>", "the shared inbox"),
    ("subscribe", "_INBOX_someone-else.>", "another device's inbox"),
    ("subscribe", "mesh.evt.device.someone-else.>", "reading another device's events"),
    ("subscribe", "$SYS.>", "system events"),
    ("subscribe", ">", "everything"),
    ("publish", "mesh.pty.ctl.someone-else", "opening a shell on another device"),
    ("publish", "mesh.pty.ctl.{me}", "opening a shell on itself"),
    ("publish", "mesh.pty.in.someone-else." + "a" * 32, "typing into another device's shell"),
    ("publish", "mesh.pty.out.someone-else." + "a" * 32, "printing into another device's shell"),
    ("publish", "mesh.shell.open", "asking the shell broker for a terminal"),
    ("subscribe", "mesh.pty.in.someone-else.*", "reading another device's keystrokes"),
    ("subscribe", "mesh.pty.out.someone-else.*", "reading another device's terminal"),
]


@pytest.mark.parametrize(("action", "subject", "what"), FORBIDDEN, ids=[f[2] for f in FORBIDDEN])
async def test_the_server_forbids(mesh: Mesh, device: Device, action: str, subject: str, what: str) -> None:
    subject = subject.format(me=device.device_id)
    if action == "publish":
        await device.nc.publish(subject, b"{}")
    else:
        await device.nc.subscribe(subject)
    await device.nc.flush()
    await eventually(
        lambda: any(subject.lower() in v.lower() for v in device.violations()),
        timeout=10,
        what=f"a denial of {what}: {device.errors}",
    )
    server_side = "Publish Violation" if action == "publish" else "Subscription Violation"
    await eventually(
        lambda: any(server_side in line and subject in line for line in mesh.server.recent),
        timeout=10,
        what=f"the server to log the {server_side}",
    )


async def test_revocation_cuts_the_live_connection_and_keeps_the_device_out(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    identity = await enroll(mesh, store, tmp_path / "dev-gone", "dev-gone")
    opened = await open_device(identity, "dev-gone")
    serials = await devices.revoke(mesh.home, store, "dev-gone", reason="key_compromise")
    # The bound: the live connection is cut within 2 seconds of the revocation.
    await eventually(lambda: opened.nc.is_closed, timeout=2.0, what="the server to close the revoked device")
    with pytest.raises(StoreUnavailable, match="refused certificate"):
        await connect(identity, name="dev-gone", reconnect=False, connect_timeout=3)
    events = [s.event async for s in store.read(subjects.device_events("dev-gone"))]
    assert isinstance(events[-1], DeviceRevoked)
    assert events[-1].serials == [f"{s:x}" for s in serials]


async def test_rotation_keeps_the_old_certificate_until_completed(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    old = await enroll(mesh, store, tmp_path / "old", "dev-rot")
    await devices.rotate(mesh.home, mesh.settings, store, "dev-rot", out_dir=tmp_path / "new")
    new = Identity(old.url, tmp_path / "new" / "ca.pem", tmp_path / "new" / "cert.pem", tmp_path / "new" / "key.pem")
    for identity in (old, new):
        await (await open_device(identity, "dev-rot")).nc.close()

    with pytest.raises(devices.RotationPending, match="not switched"):
        await devices.complete_rotation(mesh.home, store, "dev-rot")  # no heartbeat names the new certificate
    await devices.complete_rotation(mesh.home, store, "dev-rot", force=True)
    with pytest.raises(StoreUnavailable, match="refused certificate"):
        await connect(old, name="dev-rot", reconnect=False, connect_timeout=3)
    await (await open_device(new, "dev-rot")).nc.close()
    kinds = [type(s.event) async for s in store.read(subjects.device_events("dev-rot"))]
    assert kinds == [DeviceEnrolled, DeviceRotated, DeviceRevoked]
