"""The edge agent against a real mesh: commands run once, outcomes reported, offline work drained in order."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core import subjects
from core.events import CommandSucceeded, DeviceHeartbeat
from core.store import EventStore, connect
from edge import HandlerContext, default_registry, load_agent_config
from edge.agent import Agent
from mahavishnu.control import commands, devices
from tests.harness import Mesh, free_port, start_mesh
from tests.outcomes import follow_outcome
from tests.waiting import eventually, eventually_async


@dataclass
class Counting:
    """A handler that counts its runs: the proof that a command ran once."""

    runs: list[str]
    name: str = "count"
    timeout_s: float = 10.0

    def validate(self, args: dict[str, Any]) -> None:
        return None

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        self.runs.append(args.get("tag", ""))
        return {"runs": len(self.runs)}


@dataclass
class Running:
    agent: Agent
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


def start(agent: Agent) -> Running:
    stop = asyncio.Event()
    return Running(agent, stop, asyncio.create_task(agent.run(stop)))


async def enrolled(mesh: Mesh, store: EventStore, folder: Path, device_id: str, **kw: Any) -> Path:
    result = await devices.enroll(
        mesh.home, mesh.settings, store, device_id, out_dir=folder, url=mesh.identity.url, **kw
    )
    return result.agent_config


async def enrolled_beating(mesh: Mesh, store: EventStore, folder: Path, device_id: str) -> Path:
    """`enrolled`, its agent.toml asking for a heartbeat every 0.1 s instead of 30."""
    path = await enrolled(mesh, store, folder, device_id)
    path.write_text(path.read_text().replace("heartbeat_interval = 30.0", "heartbeat_interval = 0.1"))
    return path


def registry_with(handler: Any, allow: tuple[str, ...] = ()) -> Any:
    registry = default_registry(exec_allowlist=allow)
    registry.register(handler)
    return registry


@pytest.fixture
async def agent(mesh: Mesh, store: EventStore, tmp_path: Path) -> AsyncIterator[Running]:
    device_id = f"dev-{uuid.uuid4().hex[:10]}"
    config = load_agent_config(await enrolled(mesh, store, tmp_path / "dev", device_id))
    running = start(Agent(config, registry=registry_with(Counting([]), allow=("echo allowed",))))
    yield running
    await running.halt()


async def outcome(store: EventStore, device: str, name: str, args: dict[str, Any], **kw: Any) -> commands.CommandView:
    command = await commands.send(
        store, device, name, args, ttl_s=kw.get("ttl_s", 30), timeout_s=kw.get("timeout_s", 10), actor="control"
    )
    return await follow_outcome(store, command, deadline_s=30)


async def test_a_command_runs_and_its_whole_life_is_recorded(agent: Running, store: EventStore) -> None:
    device = agent.agent.device_id
    view = await outcome(store, device, "ping", {})
    assert view.state == "succeeded" and view.result["pong"] is True
    kinds = [
        s.event.tag
        async for s in store.read(subjects.device_event(device, "command"))
        if s.event is not None and getattr(s.event, "command_id", "") == view.command_id
    ]
    assert kinds == ["command.accepted.v1", "command.running.v1", "command.succeeded.v1"]


@pytest.mark.parametrize(
    ("name", "args", "state", "detail"),
    [
        ("launch-missiles", {}, "rejected", "no command 'launch-missiles'"),
        ("echo", {"x": 1}, "succeeded", ""),
        ("exec", {"command": "rm -rf /"}, "rejected", "allowlist"),
        ("sleep", {"seconds": "soon"}, "rejected", "seconds"),
    ],
)
async def test_commands_are_judged_before_they_run(
    agent: Running, store: EventStore, name: str, args: dict[str, Any], state: str, detail: str
) -> None:
    view = await outcome(store, agent.agent.device_id, name, args)
    assert view.state == state
    assert detail in view.detail


async def test_a_command_that_runs_too_long_times_out(agent: Running, store: EventStore) -> None:
    view = await outcome(store, agent.agent.device_id, "sleep", {"seconds": 60}, timeout_s=0.5)
    assert view.state == "timed_out"


class CrashBeforeAck(Agent):
    """An agent that dies after running and recording a command, before acknowledging it."""

    async def acknowledge(self, message: Any) -> None:
        assert self.nc is not None
        await self.nc.close()  # the process is gone: no ack reaches the server


async def test_a_command_redelivered_after_a_crash_is_not_run_again(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    config = load_agent_config(await enrolled(mesh, store, tmp_path / "crash", "dev-crash", ack_wait_s=1.0))
    runs: list[str] = []
    first = start(CrashBeforeAck(config, registry=registry_with(Counting(runs))))
    command = await commands.send(store, "dev-crash", "count", {"tag": "once"}, ttl_s=60, timeout_s=5, actor="control")
    await eventually(lambda: first.agent.nc is not None and first.agent.nc.is_closed, timeout=20, what="the crash")
    await first.halt()
    assert runs == ["once"]

    second = start(Agent(config, registry=registry_with(Counting(runs))))
    try:
        consumer = subjects.device_consumer("dev-crash")

        async def acked() -> bool:
            info = json.loads((await store.nc.request(f"$JS.API.CONSUMER.INFO.COMMANDS.{consumer}", b"")).data)
            # delivered twice (the crash, then the redelivery) and nothing left unacknowledged
            return bool(info["delivered"]["consumer_seq"] >= 2 and info["num_ack_pending"] == 0)

        await eventually_async(acked, timeout=30, what="the redelivery to be acknowledged")
        view = await follow_outcome(store, command, deadline_s=30)
    finally:
        await second.halt()
    assert runs == ["once"]  # redelivered, recognised, acknowledged: not run again
    assert view.state == "succeeded"
    succeeded = [
        s
        async for s in store.read(subjects.device_event("dev-crash", "command"))
        if isinstance(s.event, CommandSucceeded)
    ]
    assert len(succeeded) == 1


@dataclass
class Blocking:
    """Counts its runs; the first never ends by itself, so that the agent can die while running it."""

    runs: list[str]
    rerunnable: bool
    name: str = "block"
    timeout_s: float = 30.0

    def validate(self, args: dict[str, Any]) -> None:
        return None

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        self.runs.append("run")
        if len(self.runs) == 1:
            await asyncio.Event().wait()
        return {"runs": len(self.runs)}


@pytest.mark.parametrize(("rerunnable", "state", "runs"), [(True, "succeeded", 2), (False, "failed", 1)])
async def test_a_command_that_changes_nothing_runs_again_after_a_crash_and_any_other_is_reported_interrupted(
    mesh: Mesh, store: EventStore, tmp_path: Path, rerunnable: bool, state: str, runs: int
) -> None:
    device = f"dev-rerun-{str(rerunnable).lower()}"
    config = load_agent_config(await enrolled(mesh, store, tmp_path / "dev", device, ack_wait_s=1.0))
    handler = Blocking([], rerunnable)
    first = start(Agent(config, registry=registry_with(handler)))
    command = await commands.send(store, device, "block", {}, ttl_s=60, timeout_s=30, actor="control")
    await eventually(lambda: len(handler.runs) == 1, timeout=20, what="the first run to start")
    await first.halt()  # dies mid-run: no outcome, no acknowledgement
    second = start(Agent(config, registry=registry_with(handler)))
    try:
        view = await follow_outcome(store, command, deadline_s=30)
    finally:
        await second.halt()
    assert (view.state, len(handler.runs)) == (state, runs)
    kinds = [
        s.event.tag
        async for s in store.read(subjects.device_event(device, "command"))
        if s.event is not None and getattr(s.event, "command_id", "") == command.command_id
    ]
    # each reported once: a rerunnable command's first run recorded nothing
    assert kinds == ["command.accepted.v1", "command.running.v1", f"command.{state}.v1"]


async def test_offline_events_wait_in_the_outbox_and_arrive_in_order(tmp_path: Path) -> None:
    own = start_mesh(tmp_path / "mesh", port=free_port())
    nc = await connect(own.identity, name="control", reconnect=True)
    store = EventStore(nc)
    await store.ensure_streams()
    path = await enrolled_beating(own, store, tmp_path / "dev", "dev-offline")
    running = start(Agent(load_agent_config(path)))
    try:
        beats = subjects.device_event("dev-offline", "heartbeat")
        await eventually_async(lambda: _count(store, beats, 1), timeout=20, what="a first heartbeat")
        own.server.stop()
        state = running.agent.state
        assert state is not None
        await eventually(lambda: state.outbox_size() >= 5, timeout=20, what="heartbeats to pile up offline")
        own.server.start()
        await eventually(lambda: state.outbox_size() == 0, timeout=60, what="the outbox to drain")
        stored = [s.event async for s in store.read(beats)]
        uptimes = [e.uptime_s for e in stored if isinstance(e, DeviceHeartbeat)]
        assert uptimes == sorted(uptimes) and len(uptimes) >= 6  # none lost, in order
    finally:
        await running.halt()
        await nc.close()
        own.stop()


async def test_an_online_agent_sends_its_heartbeats_without_queueing_them(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    # Online with an empty outbox, a sample goes straight to the stream: no transaction (and
    # fsync) to queue it and none to forget it. The offline test above covers the queue.
    path = await enrolled_beating(mesh, store, tmp_path / "dev", "dev-direct")
    running = start(Agent(load_agent_config(path)))
    try:
        beats = subjects.device_event("dev-direct", "heartbeat")
        await eventually_async(lambda: _count(store, beats, 1), timeout=20, what="a first heartbeat")
        state = running.agent.state
        assert state is not None
        queued = state.outbox_ids_given()
        await eventually_async(lambda: _count(store, beats, 6), timeout=20, what="five more heartbeats")
        assert state.outbox_ids_given() == queued
        stored = [s.event async for s in store.read(beats)]
        uptimes = [e.uptime_s for e in stored if isinstance(e, DeviceHeartbeat)]
        assert uptimes == sorted(uptimes)
    finally:
        await running.halt()


async def test_a_reconnected_agent_asks_for_its_next_command_again_at_once(tmp_path: Path) -> None:
    # A restarted server has forgotten the agent's waiting request for its next command; the
    # agent asks anew when it reconnects, not when its request would have expired (30 s).
    own = start_mesh(tmp_path / "mesh", port=free_port())
    nc = await connect(own.identity, name="control", reconnect=True)
    store = EventStore(nc)
    await store.ensure_streams()
    path = await enrolled(own, store, tmp_path / "dev", "dev-asks")
    running = start(Agent(load_agent_config(path)))
    consumer = subjects.device_consumer("dev-asks")

    async def waiting() -> bool:
        try:
            info = await nc.jetstream().consumer_info("COMMANDS", consumer, timeout=2)
        except Exception:  # the server is not back yet
            return False
        return bool(info.num_waiting)

    try:
        await eventually_async(waiting, timeout=20, what="the agent's request for its next command")
        own.server.stop()
        own.server.start()
        await eventually_async(waiting, timeout=15, what="the agent's request asked anew after the restart")
    finally:
        await running.halt()
        await nc.close()
        own.stop()


async def test_an_agent_whose_connection_closed_for_good_connects_anew(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    # nats-py closes its client for good on any -ERR while reconnecting (the server's
    # authentication timeout, when the identity service is not back yet): closing it
    # ourselves leaves the agent in the same place.
    path = await enrolled_beating(mesh, store, tmp_path / "dev", "dev-reopen")
    running = start(Agent(load_agent_config(path)))
    try:
        beats = subjects.device_event("dev-reopen", "heartbeat")
        await eventually_async(lambda: _count(store, beats, 1), timeout=20, what="a first heartbeat")
        first = running.agent.nc
        assert first is not None
        await first.close()
        await eventually(
            lambda: running.agent.nc is not first and running.agent.nc is not None and running.agent.nc.is_connected,
            timeout=20,
            what="a new connection",
        )
        seen = len([s async for s in store.read(beats)])
        await eventually_async(lambda: _count(store, beats, seen + 3), timeout=20, what="heartbeats on it")
    finally:
        await running.halt()


async def _count(store: EventStore, subject: str, at_least: int) -> bool:
    return len([s async for s in store.read(subject)]) >= at_least


async def test_a_command_whose_time_to_live_passed_before_delivery_is_recorded_expired_and_never_run(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    config = load_agent_config(await enrolled(mesh, store, tmp_path / "late", "dev-late"))
    runs: list[str] = []
    command = await commands.send(store, "dev-late", "count", {}, ttl_s=0.2, timeout_s=5, actor="control")
    expiry = command.occurred_at + timedelta(seconds=command.ttl_s)
    await eventually(lambda: datetime.now(UTC) > expiry, timeout=5, what="the time to live to pass")
    running = start(Agent(config, registry=registry_with(Counting(runs))))  # the device comes online late
    try:
        view = await follow_outcome(store, command, deadline_s=30)
    finally:
        await running.halt()
    assert view.state == "expired"
    assert runs == []


async def test_rotation_completes_once_the_agent_uses_the_new_certificate(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    path = await enrolled_beating(mesh, store, tmp_path / "rot", "dev-rotating")
    old = start(Agent(load_agent_config(path)))
    await devices.rotate(mesh.home, mesh.settings, store, "dev-rotating", out_dir=tmp_path / "rot-new")
    with pytest.raises(devices.RotationPending):
        await devices.complete_rotation(mesh.home, store, "dev-rotating")
    await old.halt()

    for name in ("cert.pem", "key.pem"):  # the operator installs the new files; the agent restarts
        (tmp_path / "rot" / name).write_bytes((tmp_path / "rot-new" / name).read_bytes())
    new = start(Agent(load_agent_config(path)))
    try:
        newest = devices.devices(mesh.home)["dev-rotating"][-1].fingerprint_sha256

        async def switched() -> bool:
            heartbeat = await store.last_event("mesh.evt.device.dev-rotating.heartbeat")
            return getattr(heartbeat, "cert_fingerprint_sha256", "") == newest

        await eventually_async(switched, timeout=30, what="a heartbeat naming the new certificate")
        revoked = await devices.complete_rotation(mesh.home, store, "dev-rotating")
    finally:
        await new.halt()
    assert len(revoked) == 1


async def test_the_shadow_converges_from_desired_to_reported(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    from projections.devices import Devices
    from projections.queries import DeviceGet, ReadModels, devices_get
    from projections.runner import ProjectionRunner

    config = load_agent_config(await enrolled(mesh, store, tmp_path / "shadow", "dev-shadow"))
    running = start(Agent(config))
    key = "ab" * 32
    runner = ProjectionRunner(Devices(), store, directory=tmp_path / "models", key=key)
    await runner.open()
    try:
        assert await devices.desire(store, "dev-shadow", {"rate": 5, "mode": "eco"}) == 1

        async def converged() -> bool:
            await runner.catch_up()
            shadow = (await devices_get(ReadModels(tmp_path / "models", key), DeviceGet(id="dev-shadow")))["shadow"]
            return bool(
                shadow["version"] == 1 and shadow["reported"] == {"rate": 5, "mode": "eco"} and shadow["delta"] == {}
            )

        await eventually_async(converged, timeout=30, what="the reported state to match the desired one")
        assert await devices.desire(store, "dev-shadow", {"rate": 7}) == 2
    finally:
        await runner.close()
        await running.halt()
