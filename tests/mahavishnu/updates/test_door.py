"""MQTT-only devices' updates: the bridge tells the device where to fetch, and up's HTTP door serves signed links only.

A real mesh with its MQTT listener, a real paho-mqtt device, the real bridge, a real
artifact in the real bucket, and the door over HTTPS with the mesh's server certificate.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.metrics import new_registry
from core.probes import ProbeServer, ServerTLS
from core.store import EventStore
from core.updates.states import INSTALL_COMMAND
from mahavishnu.control import commands
from mahavishnu.gateways.mqtt import bridge as bridging
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.updates import artifacts, links
from mahavishnu.updates.door import ArtifactDoor
from tests.harness import Mesh, start_mesh
from tests.mahavishnu.gateways.mqtt.test_bridge import enroll_mqtt, paho_device
from tests.waiting import eventually

KEY = b"k" * 32


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("door-mesh"), mqtt_port=-1)
    yield running
    running.stop()


@pytest.fixture
async def door(mesh: Mesh, store: EventStore, tmp_path: Path) -> AsyncIterator[ArtifactDoor]:
    await ensure_update_buckets(store.js, replicas=1)
    server_dir = mesh.home.server_dir
    tls = ServerTLS(server_dir / "cert.pem", server_dir / "key.pem", client_ca=mesh.home.ca_dir / "ca.pem")
    opened = ArtifactDoor(store, KEY, tmp_path / "cache", base="")
    server = ProbeServer("127.0.0.1", 0, new_registry(), ready=lambda: True, routes=[opened.route()], tls=tls)
    await server.start()
    opened.base = f"https://127.0.0.1:{server.port}"
    bridge = await bridging.open_bridge(
        store,
        mesh.home.mqtt_bridge_identity(mesh.settings, mesh.port),
        host="127.0.0.1",
        port=mesh.mqtt_port,
        devices=lambda: mqtt.registered(mesh.home.root),
        fetch=opened.fetch_for,
    )
    bridge.poll_s = 0.2
    stop = asyncio.Event()
    running = asyncio.create_task(bridge.run(stop))
    yield opened
    stop.set()
    await running
    await bridging.close_bridge(bridge)
    await server.stop()


async def test_an_mqtt_device_is_told_where_to_fetch_and_the_link_serves_the_signed_bytes_resumably(
    mesh: Mesh, store: EventStore, door: ArtifactDoor, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    (tmp_path / "fw.tar.gz").write_bytes(payload)
    await artifacts.add(
        store, tmp_path / "fw.tar.gz", name="valve-fw", version="3.1.0", device_type="valve", actor="control"
    )
    folder = await enroll_mqtt(mesh, store, tmp_path / "valve", "valve-7")
    device = paho_device(mesh, folder, "valve-7")
    try:
        device.subscribe("mesh/cmd/valve-7/#")
        args = {"name": "valve-fw", "version": "3.1.0"}
        command = await commands.send(store, "valve-7", INSTALL_COMMAND, args, ttl_s=600, timeout_s=60, actor="control")
        await eventually(lambda: device.received, timeout=30, what="the update command over MQTT")
    finally:
        device.stop()
    _, _, body = device.received[0]
    assert body["args"] == args and body["command_id"] == command.command_id
    fetch = body["fetch"]
    assert (fetch["length"], fetch["sha256"], fetch["device_type"]) == (
        len(payload),
        hashlib.sha256(payload).hexdigest(),
        "valve",
    )
    query = parse_qs(urlsplit(fetch["url"]).query)
    assert query["device"] == ["valve-7"]
    assert int(query["expires"][0]) == int(command.occurred_at.timestamp() + 600 + 60)

    trusted = ssl.create_default_context(cafile=str(mesh.home.ca_dir / "ca.pem"))
    stale = links.link(door.base, KEY, name="valve-fw", version="3.1.0", device="valve-7", expires=int(time.time()) - 1)
    async with httpx.AsyncClient(verify=trusted) as client:
        whole = await client.get(fetch["url"])
        rest = await client.get(fetch["url"], headers={"Range": f"bytes={len(payload) - 1000}-"})
        forged = await client.get(fetch["url"].replace("valve-7", "valve-8"))
        expired = await client.get(stale)
        bare = await client.get(f"{door.base}/artifacts/valve-fw/3.1.0")
    assert whole.status_code == 200 and whole.content == payload
    assert rest.status_code == 206 and rest.content == payload[-1000:]  # a cut download resumes where it stopped
    assert forged.status_code == 403 and "signature does not hold" in forged.json()["error"]
    assert expired.status_code == 403 and "expired" in expired.json()["error"]
    assert bare.status_code == 403 and "not a signed artifact link" in bare.json()["error"]


async def test_other_commands_and_unknown_artifacts_get_no_link(store: EventStore, door: ArtifactDoor) -> None:
    from core.events import CommandIssued

    ping = CommandIssued(command_id="c-1", device_id="d", name="ping", args={})
    unknown = CommandIssued(command_id="c-2", device_id="d", name=INSTALL_COMMAND, args={"name": "x", "version": "9"})
    assert await door.fetch_for(ping) is None and await door.fetch_for(unknown) is None
