"""Updates rolled out as campaigns, with nothing stood in: signed artifacts, agents that verify, download and
install them into A/B slots, an SSH host the gateway updates, and a rollback rule that returns the devices
that succeeded to the version they ran before."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

import pytest

from core.campaigns.states import CampaignStatus, ExecutionState
from core.events import CommandIssued
from core.store import EventStore
from core.updates.states import INSTALL_COMMAND
from edge.agent import Agent
from edge.agent_config import load_agent_config
from mahavishnu.control import devices
from mahavishnu.gateways.ssh.gateway import SshGateway
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.updates import artifacts
from mahavishnu.updates.trust import control
from tests.edge.updates.kit import release
from tests.harness import Mesh
from tests.mahavishnu.campaigns.fleet import Fleet, create, orchestrator, spec, view_of
from tests.mahavishnu.gateways.ssh.test_updates import DEVICE_TYPE, FAST, add_host
from tests.mahavishnu.sshd import Sshd, start_sshd
from tests.waiting import eventually_async


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


async def publish(mesh: Mesh, store: EventStore, folder: Path, name: str, version: str, device_type: str) -> None:
    """`mahavishnu artifact add`: the bytes into the bucket, the target signed by the mesh's online keys."""
    added = await artifacts.add(
        store, release(folder, version), name=name, version=version, device_type=device_type, actor="olga"
    )
    await control.stage_target(
        mesh.home,
        store.js,
        store,
        name=name,
        version=version,
        length=added.length,
        sha256=added.sha256,
        device_type=device_type,
        actor="olga",
    )


@contextlib.asynccontextmanager
async def updating_agents(
    mesh: Mesh, store: EventStore, folder: Path, kinds: dict[str, str]
) -> AsyncIterator[dict[str, Path]]:
    """Enrol a device per (id -> device type), each an agent with [update] (A/B slots); their `current` folders."""
    running = Fleet()
    slots: dict[str, Path] = {}
    try:
        for device, kind in kinds.items():
            enrolment = await devices.enroll(
                mesh.home, mesh.settings, store, device, out_dir=folder / device, url=mesh.identity.url
            )
            with enrolment.agent_config.open("a") as config:
                config.write(f'\n[update]\ndevice_type = "{kind}"\ninstaller = "ab"\nslots = "app"\n')
            slots[device] = folder / device / "app" / "current"
            agent = Agent(load_agent_config(enrolment.agent_config))
            running.tasks.append(asyncio.create_task(agent.run(running.stop)))
        yield slots
    finally:
        await running.halt()


@contextlib.asynccontextmanager
async def gateway(mesh: Mesh, store: EventStore) -> AsyncIterator[SshGateway]:
    """The SSH gateway with the real verifier and downloader, as `up` runs it."""
    serving = SshGateway(store, mesh.home.root, FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(serving.run(stop))
    try:
        yield serving
    finally:
        stop.set()
        await task


async def until(store: EventStore, campaign: str, *statuses: CampaignStatus, timeout: float = 120) -> None:
    async def reached() -> bool:
        return (await view_of(store, campaign)).status in statuses

    await eventually_async(reached, timeout=timeout, what=f"campaign {campaign} to be {statuses}")


def versions(slots: dict[str, Path], devices_: Iterable[str]) -> dict[str, str]:
    return {device: (slots[device] / "VERSION").read_text() for device in devices_}


@pytest.fixture
async def trusted(mesh: Mesh, store: EventStore) -> None:
    await ensure_update_buckets(store.js, replicas=1)
    await control.ensure_initialised(mesh.home)
    await control.refresh(mesh.home, store.js, store, actor="control")


async def test_an_update_campaign_over_agents_and_an_ssh_host_installs_the_signed_version_everywhere(
    mesh: Mesh, store: EventStore, sshd: Sshd, trusted: None, tmp_path: Path
) -> None:
    name = f"app-{uuid.uuid4().hex[:6]}"
    (tmp_path / "releases").mkdir()
    await publish(mesh, store, tmp_path / "releases", name, "2.0", DEVICE_TYPE)
    agents = {f"web-{uuid.uuid4().hex[:6]}": DEVICE_TYPE for _ in range(2)}
    host = await add_host(mesh, store, sshd, tmp_path)
    async with updating_agents(mesh, store, tmp_path, agents) as slots, gateway(mesh, store), orchestrator(mesh):
        campaign = await create(
            store,
            spec(
                {
                    "name": "web 2.0",
                    "document": {"update": {"name": name, "version": "2.0"}},
                    "targets": {"devices": [*agents, host.device_id]},
                    "execution": {"timeout_s": 120},
                }
            ),
        )
        await until(store, campaign, CampaignStatus.FINISHED)
    view = await view_of(store, campaign)
    assert {d: e.state for d, e in view.executions.items()} == dict.fromkeys([*agents, host.device_id], "succeeded")
    assert versions(slots, agents) == dict.fromkeys(agents, "2.0")
    assert host.current() == "2.0"


async def test_a_rollback_rule_returns_the_devices_that_succeeded_to_their_last_good_version(
    mesh: Mesh, store: EventStore, trusted: None, tmp_path: Path
) -> None:
    name = f"app-{uuid.uuid4().hex[:6]}"
    (tmp_path / "releases").mkdir()
    for version in ("1.0", "2.0"):
        await publish(mesh, store, tmp_path / "releases", name, version, "pump")
    pumps = [f"pump-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    valve = f"valve-{uuid.uuid4().hex[:6]}"  # another device type: it refuses 2.0, and the rule fires
    kinds = {**dict.fromkeys(pumps, "pump"), valve: "valve"}
    async with updating_agents(mesh, store, tmp_path, kinds) as slots, orchestrator(mesh):
        first = await create(
            store,
            spec(
                {"name": "1.0", "document": {"update": {"name": name, "version": "1.0"}}, "targets": {"devices": pumps}}
            ),
        )
        await until(store, first, CampaignStatus.FINISHED)
        assert versions(slots, pumps) == dict.fromkeys(pumps, "1.0")
        second = await create(
            store,
            spec(
                {
                    "name": "2.0",
                    "document": {"update": {"name": name, "version": "2.0"}},
                    "targets": {"devices": [*pumps, valve]},
                    "abort": [{"failure_type": "failed", "threshold_pct": 30, "min_executed": 3, "action": "rollback"}],
                }
            ),
        )

        async def rolled_back() -> bool:
            view = await view_of(store, second)
            done = [e for d in pumps if (e := view.executions.get(d)) is not None and e.rollback]
            return len(done) == 2 and all(e.state == ExecutionState.SUCCEEDED for e in done)

        await eventually_async(rolled_back, timeout=120, what="the pumps that took 2.0 to be rolled back")
    view = await view_of(store, second)
    assert view.status == CampaignStatus.ABORTED and view.abort_action == "rollback"
    assert view.executions[valve].state == ExecutionState.FAILED
    assert view.executions[valve].detail.startswith("update refused (device_type)")
    assert versions(slots, pumps) == dict.fromkeys(pumps, "1.0")
    for pump in pumps:  # 1.0, 2.0, then 1.0 again as an allowed downgrade
        sent = [s.event async for s in store.read(f"mesh.cmd.{pump}.>") if isinstance(s.event, CommandIssued)]
        assert [(e.name, e.args["version"], e.args.get("allow_downgrade")) for e in sent] == [
            (INSTALL_COMMAND, "1.0", False),
            (INSTALL_COMMAND, "2.0", False),
            (INSTALL_COMMAND, "1.0", True),
        ]
