"""One campaign over every kind of device the mesh serves: agents, an MQTT-only device (paho-mqtt on the
server's MQTT listener, through the bridge) and an SSH host (a real sshd, through the gateway)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.campaigns.states import CampaignStatus
from core.store import EventStore
from mahavishnu.gateways.mqtt import bridge as bridging
from tests.harness import Mesh, start_mesh
from tests.mahavishnu.campaigns.fleet import create, device_ids, fleet, orchestrator, spec, view_of
from tests.mahavishnu.gateways.mqtt.test_bridge import enroll_mqtt, paho_device, running_bridge
from tests.mahavishnu.gateways.ssh.test_gateway import register, serving
from tests.mahavishnu.sshd import Sshd, start_sshd
from tests.waiting import eventually_async


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("kinds-mesh"), mqtt_port=-1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
async def bridge(mesh: Mesh, store: EventStore) -> AsyncIterator[bridging.MqttBridge]:
    async with running_bridge(mesh, store) as opened:
        yield opened


async def test_a_campaign_over_agents_an_mqtt_device_and_an_ssh_host_completes(
    mesh: Mesh, store: EventStore, sshd: Sshd, bridge: bridging.MqttBridge, tmp_path: Path
) -> None:
    agents = device_ids(2, failing=0, fail_pct=0)
    meter, host = f"meter-{uuid.uuid4().hex[:6]}", f"ssh-{uuid.uuid4().hex[:6]}"
    folder = await enroll_mqtt(mesh, store, tmp_path / meter, meter)
    device = paho_device(mesh, folder, meter, answer="succeeded")
    await register(mesh, store, sshd, host)
    try:
        device.subscribe(f"mesh/cmd/{meter}/#")
        async with fleet(mesh, store, tmp_path, agents), serving(mesh, store), orchestrator(mesh):
            campaign = await create(
                store,
                spec(
                    {
                        "name": "kinds",
                        "document": {"command": {"name": "ping", "args": {}}},
                        "targets": {"devices": [*agents, meter, host]},
                    }
                ),
            )

            async def finished() -> bool:
                return (await view_of(store, campaign)).status == CampaignStatus.FINISHED

            await eventually_async(finished, timeout=60, what="the campaign over every kind of device to finish")
    finally:
        device.stop()
    view = await view_of(store, campaign)
    assert {d: e.state for d, e in view.executions.items()} == dict.fromkeys([*agents, meter, host], "succeeded")
