"""The identity service against a real nats-server: devices admitted by the auth callout, and what happens
when the service is down, on a mesh of this module's own (the tests stop its identity service)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import subjects
from core.errors import StoreUnavailable
from core.events import AuditRecorded
from core.store import EventStore, Identity, connect
from mahavishnu.control import devices
from mahavishnu.identity import natsjwt
from tests.harness import Mesh, identity_thread, start_mesh
from tests.tools import tool
from tests.waiting import eventually, eventually_async


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("identity"), mqtt_port=-1)
    yield running
    running.stop()


def identity_of(mesh: Mesh, folder: Path) -> Identity:
    return Identity(mesh.identity.url, folder / "ca.pem", folder / "cert.pem", folder / "key.pem")


async def enrolled(mesh: Mesh, store: EventStore, tmp_path: Path, transport: str = "nats") -> tuple[str, Path]:
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=tmp_path / device_id, transport=transport)
    return device_id, tmp_path / device_id


async def refused(identity: Identity, name: str) -> None:
    """The server does not let this connection in, and no client that never became connected is handed out.

    (Waiting for a callout that does not answer, the server sends its first PING before
    any answer to our CONNECT: nats-py alone would return a client stuck connecting.)
    """
    with pytest.raises(StoreUnavailable):
        await connect(identity, name=name, reconnect=True, connect_timeout=3)


async def test_while_the_service_is_down_connections_stay_and_new_ones_wait_for_it(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    early, early_folder = await enrolled(mesh, store, tmp_path)
    late, late_folder = await enrolled(mesh, store, tmp_path)
    connected = await connect(
        identity_of(mesh, early_folder), name=early, reconnect=False, inbox_prefix=subjects.device_inbox_prefix(early)
    )
    mesh.identity_service.stop()
    try:
        # The server enforces what it granted: the live connection keeps its permissions...
        await connected.publish(subjects.device_event(early, "telemetry"), b"{}")
        await connected.flush(timeout=5)
        assert connected.is_connected
        # ...and a new connection is refused once the server's wait for an answer (its auth timeout) runs out.
        await refused(identity_of(mesh, late_folder), late)
    finally:
        mesh.identity_service = identity_thread(mesh.home, mesh.settings, mesh.port)
    again = await connect(
        identity_of(mesh, late_folder), name=late, reconnect=False, inbox_prefix=subjects.device_inbox_prefix(late)
    )
    await again.close()
    await connected.close()


async def test_an_mqtt_devices_certificate_is_refused_on_the_nats_port(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    device_id, folder = await enrolled(mesh, store, tmp_path, transport="mqtt")
    await refused(identity_of(mesh, folder), device_id)
    assert mesh.identity_service.service is not None
    refusals = mesh.identity_service.service.callout.counts.refusals
    await eventually(lambda: any("is an MQTT device" in r for r in refusals), timeout=5, what="the callout's refusal")


def mqtt_publish(mesh: Mesh, folder: Path, client_id: str, device_id: str) -> subprocess.CompletedProcess[str]:
    args = [tool("mosquitto_pub"), "--cafile", str(mesh.home.ca_dir / "ca.pem"), "-h", "127.0.0.1"]
    args += ["-p", str(mesh.mqtt_port), "--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem")]
    args += ["-i", client_id, "-q", "1", "-t", f"mesh/evt/device/{device_id}/telemetry", "-m", json.dumps({"t": 1})]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


async def mqtt_streams(store: EventStore) -> list[str]:
    """The server's MQTT streams in the MESH account (the control connection's)."""
    streams = await store.nc.jetstream().streams_info()
    return [s.config.name for s in streams if (s.config.name or "").startswith("$MQTT_")]


async def test_a_nats_devices_certificate_is_refused_on_the_mqtt_listener(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    device_id, folder = await enrolled(mesh, store, tmp_path)
    done = await asyncio.to_thread(mqtt_publish, mesh, folder, device_id, device_id)
    assert done.returncode != 0, done.stdout + done.stderr
    assert mesh.identity_service.service is not None
    refusals = mesh.identity_service.service.callout.counts.refusals
    assert any(f"device:{device_id} is a NATS device: it may not connect over mqtt" in r for r in refusals)
    # Refused before the server set up MQTT for the account: no session streams in MESH, nothing in EVENTS.
    assert await mqtt_streams(store) == []
    assert [type(s.event).__name__ async for s in store.read(subjects.device_events(device_id))] == ["DeviceEnrolled"]


async def test_the_control_certificate_is_refused_on_the_mqtt_listener(mesh: Mesh, store: EventStore) -> None:
    done = await asyncio.to_thread(mqtt_publish, mesh, mesh.home.control_dir, "control", "control")
    assert done.returncode != 0, done.stdout + done.stderr
    await eventually(  # the server's log line is read on a thread of its own, maybe after mosquitto exits
        lambda: any('"control" - authentication error' in line for line in mesh.server.recent),
        timeout=10,
        what="the server to log the refusal",
    )
    assert await mqtt_streams(store) == []


async def refused_audits(store: EventStore, device_id: str) -> list[AuditRecorded]:
    found = []
    async for stored in store.read(subjects.audit("identity", device_id)):
        if isinstance(stored.event, AuditRecorded) and stored.event.action == "connection.refused":
            found.append(stored.event)
    return found


async def test_an_mqtt_client_id_not_the_devices_own_is_refused_and_audited(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    device_id, folder = await enrolled(mesh, store, tmp_path, transport="mqtt")
    other, _ = await enrolled(mesh, store, tmp_path, transport="mqtt")
    done = await asyncio.to_thread(mqtt_publish, mesh, folder, other, device_id)  # the other device's session
    assert done.returncode != 0 and "not authorised" in (done.stdout + done.stderr).lower(), done

    async def audited() -> bool:
        return bool(await refused_audits(store, device_id))

    await eventually_async(audited, timeout=10, what="the refusal's audit record")
    (record,) = await refused_audits(store, device_id)
    assert record.target == device_id and record.outcome == "denied"
    assert record.details["client_id"] == other and record.details["over"] == "mqtt"
    assert f"as client id '{other}'" in record.details["reason"]
    # Its own id, and its own id with a name after "/", are let in.
    for client_id in (device_id, f"{device_id}/pub"):
        done = await asyncio.to_thread(mqtt_publish, mesh, folder, client_id, device_id)
        assert done.returncode == 0, done.stdout + done.stderr


async def test_an_unreadable_request_is_counted_and_left_unanswered(mesh: Mesh) -> None:
    assert mesh.identity_service.service is not None
    callout = mesh.identity_service.service.callout
    before = callout.counts.unreadable
    assert callout.respond(b"not a jwt") is None
    signer = natsjwt.keypair(natsjwt.new_account_seed())
    assert callout.respond(natsjwt.encode({"nats": {"type": "authorization_request"}}, signer).encode()) is None
    assert callout.counts.unreadable == before + 2
