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
from core.store import EventStore, Identity, connect
from mahavishnu.control import devices
from mahavishnu.identity import natsjwt
from tests.harness import Mesh, identity_thread, start_mesh
from tests.tools import tool
from tests.waiting import eventually


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


async def test_a_nats_devices_certificate_is_refused_on_the_mqtt_listener(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    device_id, folder = await enrolled(mesh, store, tmp_path)
    args = [tool("mosquitto_pub"), "--cafile", str(mesh.home.ca_dir / "ca.pem"), "-h", "127.0.0.1"]
    args += ["-p", str(mesh.mqtt_port), "--cert", str(folder / "cert.pem"), "--key", str(folder / "key.pem")]
    args += ["-i", device_id, "-q", "1", "-t", f"mesh/evt/device/{device_id}/telemetry", "-m", json.dumps({"t": 1})]
    done = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0, done.stdout + done.stderr
    assert mesh.identity_service.service is not None
    refusals = mesh.identity_service.service.callout.counts.refusals
    assert any(f"device:{device_id} is a NATS device: it may not connect over mqtt" in r for r in refusals)


async def test_an_unreadable_request_is_counted_and_left_unanswered(mesh: Mesh) -> None:
    assert mesh.identity_service.service is not None
    callout = mesh.identity_service.service.callout
    before = callout.counts.unreadable
    assert callout.respond(b"not a jwt") is None
    signer = natsjwt.keypair(natsjwt.new_account_seed())
    assert callout.respond(natsjwt.encode({"nats": {"type": "authorization_request"}}, signer).encode()) is None
    assert callout.counts.unreadable == before + 2
