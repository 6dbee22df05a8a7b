"""The loopback cluster with real nats-server processes: a node killed mid-append, and a node that cannot start.

The failover tests run `mahavishnu up --cluster 3` as a user would, append 100,000 events
through the event store's bulk path (Nats-Msg-Id on every event) from a client given every
node's URL, and `kill -9` one node half-way. Every event acknowledged must then be in the
stream exactly once, and the read models of the running `up` must catch up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client

from core.config import Settings, load_config
from core.errors import StoreError
from core.events import Event, TelemetryReported
from core.store import EventStore, connect
from mahavishnu.runtime.cluster import ClusterSupervisor, create_streams, prepare_cluster
from mahavishnu.runtime.clusterplan import Node, plan_nodes
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.streams import streams_of
from mahavishnu.runtime.supervisor import RestartPolicy
from projections.database import database_key
from projections.devices import Devices
from projections.status import ReadModelStatus, read_model_status
from tests.harness import free_port_run
from tests.mahavishnu.cli_harness import MAHAVISHNU, Running, environment, run, start_up, stop_up
from tests.waiting import eventually, eventually_async, wait_until

EVENTS = 100_000
CHUNK = 1_000  # events per append_many call; an acknowledgement is timed when its chunk completes
RESUME_WITHIN_S = 5.0  # the requirement
DEVICE = "failover"


def cluster_env() -> dict[str, str]:
    return {
        "MAHAVISHNU_SERVER__CLUSTER": "3",  # so that `status` and this test's settings know every node
        "MAHAVISHNU_SERVER__PORT": str(free_port_run(3)),
        "MAHAVISHNU_SERVER__CLUSTER_PORT": str(free_port_run(3)),
        "MAHAVISHNU_SERVER__MONITOR_PORT": "0",
        "MAHAVISHNU_HTTP__PORT": "0",
    }


async def _api(nc: Client, subject: str, body: dict[str, object] | None = None) -> dict[str, object]:
    reply = await nc.request(subject, msgspec.json.encode(body or {}), timeout=5)
    return msgspec.json.decode(reply.data)  # type: ignore[no-any-return]


async def _events_leader(nc: Client) -> str:
    info = await _api(nc, "$JS.API.STREAM.INFO.EVENTS")
    return str(info.get("cluster", {}).get("leader", ""))  # type: ignore[union-attr]


def _node_of(nc: Client, nodes: Sequence[Node]) -> Node:
    assert nc.connected_url is not None
    return next(node for node in nodes if node.client_port == nc.connected_url.port)


def _kill(node: Node) -> int:
    """kill -9 the node's process, as a crash would; its pid."""
    pid = int(node.pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    return pid


def _ready(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:  # not listening yet, or 503 (urllib raises HTTPError, an OSError)
        return False


def _restarted(node: Node, old_pid: int) -> bool:
    """True once the node runs again under a new pid."""
    try:
        pid = int(node.pid_file.read_text().strip())
        return pid != old_pid and b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def _calling_at(events: Sequence[Event], at: int, action: Callable[[], None]) -> Iterator[Event]:
    """The events, calling `action` just before the one at index `at` is taken: a kill while a batch is in flight."""
    for index, event in enumerate(events):
        if index == at:
            action()
        yield event


async def _append_through_a_kill(
    store: EventStore, events: Sequence[Event], kill: Callable[[], None]
) -> tuple[float, list[float]]:
    """Append every event in chunks, killing a node half-way; (time of the kill, time each chunk was acknowledged).

    A chunk that fails (the node it was sent to died, no leader yet) is appended again with
    the same events: the server drops what it had stored by their Nats-Msg-Id.
    """
    killed_at = 0.0

    def kill_now() -> None:
        nonlocal killed_at
        kill()
        killed_at = time.monotonic()

    acked_at = []
    for start in range(0, len(events), CHUNK):
        chunk = events[start : start + CHUNK]
        source: Sequence[Event] | Iterator[Event] = chunk
        if start <= len(events) // 2 < start + CHUNK:
            source = _calling_at(chunk, len(events) // 2 - start, kill_now)
        while True:
            try:
                report = await store.append_many(source)
                break
            except StoreError:
                source = chunk
                await asyncio.sleep(0.05)  # retry backoff while the cluster fails over (not a synchronisation)
        assert report.acknowledged == len(chunk)
        acked_at.append(time.monotonic())
    assert killed_at, "the node was never killed"
    return killed_at, acked_at


def _resume_gap(killed_at: float, acked_at: list[float]) -> float:
    """From the last acknowledgement before the kill to the first after it."""
    before = max(t for t in acked_at if t <= killed_at)
    after = min(t for t in acked_at if t > killed_at)
    return after - before


async def _stored_ids(store: EventStore, *, timeout: float = 60.0) -> Counter[str]:
    """How many times each event id is in the stream, read from the start.

    A read is a client of the cluster like any other: while the restarted node catches up
    or a consumer's node changes, a fetch can go unanswered. The read is then done again
    from the start, as the projections retry theirs, until `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        counts: Counter[str] = Counter()
        try:
            async for stored in store.read(f"mesh.evt.device.{DEVICE}.>"):
                assert stored.event is not None, stored.error
                counts[stored.event.event_id] += 1
            return counts
        except StoreError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"the stream could not be read back within {timeout} s: {exc}") from exc
            print(f"reading back again: {exc}")


async def _devices_status(store: EventStore, home: Home) -> ReadModelStatus | None:
    """The devices read model's status, None while the streams cannot be asked (a cluster electing)."""
    try:
        return await read_model_status(Devices(), store, home.readmodels_dir, database_key(home.root, os.environ))
    except StoreError:
        return None


async def _projections_caught_up(store: EventStore, home: Home, last_seq: int) -> bool:
    status = await _devices_status(store, home)
    return status is not None and status.lag_events == 0 and status.positions.get("mesh.evt.device.>", 0) >= last_seq


async def _kill_during_appends(tmp_path: Path, choose: str) -> tuple[float, Node, Running]:
    """Run up --cluster 3, append EVENTS events, kill one node half-way; the resume gap and the killed node."""
    running = start_up(tmp_path, "--cluster", "3", **cluster_env())
    settings: Settings = load_config(None, env=running.env)
    home = Home(running.home)
    nodes = plan_nodes(home.root, settings)
    nc = await connect(home.control_identity(settings), name="test-appender")
    try:
        store = EventStore(nc, streams_of(settings))
        victim = await _choose_victim(nc, nodes, choose)
        events = [TelemetryReported(device_id=DEVICE, metrics={"i": float(i)}) for i in range(EVENTS)]

        killed: list[int] = []
        started = time.monotonic()
        killed_at, acked_at = await _append_through_a_kill(store, events, lambda: killed.append(_kill(victim)))
        gap = _resume_gap(killed_at, acked_at)
        print(f"{choose}: {EVENTS} events in {time.monotonic() - started:.1f} s, appends resumed {gap:.2f} s after")

        counts = await _stored_ids(store)
        assert len(counts) == EVENTS and set(counts) == {e.event_id for e in events}  # every acknowledged event
        assert max(counts.values()) == 1  # and each exactly once
        # The last of these events, not of the stream: whatever lands after them (another service's
        # event) is not on the devices model's subjects, so its position would never reach it.
        last_seq = await store.last_subject_sequence(events[-1].subject())
        await eventually_async(
            lambda: _projections_caught_up(store, home, last_seq), timeout=120, what="the devices read model"
        )
        # The killed node's supervisor started it again.
        await eventually(lambda: _restarted(victim, killed[0]), timeout=30, what=f"{victim.name} to be restarted")
        assert f'"server": "mahavishnu-{victim.name}", "exit_code": -9' in running.log()
        return gap, victim, running
    except BaseException:
        stop_up(running)
        raise
    finally:
        await nc.close()


async def _choose_victim(nc: Client, nodes: Sequence[Node], choose: str) -> Node:
    """`follower`: the node this client is connected to, which must then fail over, moved off the EVENTS
    leadership first; `leader`: the EVENTS stream's leader."""
    leader = await _events_leader(nc)
    if choose == "leader":
        return next(node for node in nodes if node.server_name == leader)
    victim = _node_of(nc, nodes)
    if leader == victim.server_name:
        await _api(nc, "$JS.API.STREAM.LEADER.STEPDOWN.EVENTS")

        async def moved() -> bool:
            return (await _events_leader(nc)) not in ("", victim.server_name)

        await eventually_async(moved, timeout=30, what="the EVENTS leader to move off the connected node")
    return victim


@pytest.mark.slow
async def test_kill_9_of_the_connected_node_loses_nothing_and_appends_resume_within_5_s(tmp_path: Path) -> None:
    gap, _, running = await _kill_during_appends(tmp_path, "follower")
    stop_up(running)
    assert gap < RESUME_WITHIN_S, f"appends resumed {gap:.2f} s after the kill"


@pytest.mark.slow
async def test_kill_9_of_the_stream_leader_loses_nothing_and_appends_resume_after_an_election(tmp_path: Path) -> None:
    """The stream's leader dies: nothing can be acknowledged until the other two elect a new one.

    nats-server 2.15's Raft waits a random 4-9 s (compiled in, not configurable) without
    hearing from a leader before it campaigns, so the issue's 5 s cannot be promised here.
    The bulk appender retries as soon as the stream announces its new leader (a batch in
    flight then can never complete), so the gap is the election's: 5.0-8.1 s over four runs
    under `up` on this 2-core machine (10.2-10.5 s before, waiting out acknowledgement
    timeouts). What must hold is that nothing acknowledged is lost or doubled and that
    appends resume.
    """
    gap, _, running = await _kill_during_appends(tmp_path, "leader")
    stop_up(running)
    assert gap < 20.0, f"appends resumed {gap:.2f} s after the kill"  # an election or two, on a loaded machine


async def test_a_node_whose_port_is_taken_is_named_and_the_others_keep_running(tmp_path: Path) -> None:
    env = cluster_env()
    settings = load_config(None, env=env)
    home = Home(tmp_path / "home")
    nodes = prepare_cluster(home, settings)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", nodes[1].client_port))
    squatter.listen()
    cluster = ClusterSupervisor(nodes, RestartPolicy(initial=0.5, maximum=2.0, max_crashes=10), mesh="mahavishnu")
    watching: asyncio.Task[None] | None = None
    try:
        await cluster.start()
        watching = asyncio.create_task(cluster.watch())

        problem = cluster.problems["n2"]
        assert problem.startswith(f"cluster node n2 (mahavishnu-n2: client port {nodes[1].client_port}")
        assert "already in use" in problem and "free those ports" in problem
        assert "the other nodes keep running" in problem
        assert [node.name for node in cluster.running_nodes()] == ["n1", "n3"] and cluster.running

        # The two that run serve as one: what a client publishes on n1 reaches a subscriber on n3.
        on_n1 = await connect(home.control_identity(settings, nodes[0].client_port), name="n1", reconnect=False)
        on_n3 = await connect(home.control_identity(settings, nodes[2].client_port), name="n3", reconnect=False)
        try:
            sub = await on_n3.subscribe("mesh.test.hello")
            await on_n3.flush()

            async def delivered() -> bool:
                await on_n1.publish("mesh.test.hello", b"hi")
                try:
                    return (await sub.next_msg(timeout=0.5)).data == b"hi"
                except TimeoutError:
                    return False  # the route's interest not propagated yet

            await eventually_async(delivered, timeout=30, what="a message routed from n1 to n3")
        finally:
            await on_n1.close()
            await on_n3.close()

        # Once the port is free, n2's supervisor brings it in and the R3 streams can be created.
        squatter.close()
        nc = await connect(home.control_identity(settings), name="test")
        try:
            store = EventStore(nc, streams_of(settings))
            await create_streams(store, cluster, timeout=60)
            info = await _api(nc, "$JS.API.STREAM.INFO.EVENTS")
            peers = info["cluster"]["replicas"]  # type: ignore[index]
            assert info["config"]["num_replicas"] == 3 and len(peers) == 2  # type: ignore[index,arg-type]
        finally:
            await nc.close()
        assert [node.name for node in cluster.running_nodes()] == ["n1", "n2", "n3"]
    finally:
        squatter.close()
        cluster.stopping()
        await cluster.stop()
        if watching is not None:
            await watching


def test_up_names_a_node_that_cannot_start_runs_on_and_takes_it_in_once_its_port_is_free(tmp_path: Path) -> None:
    env = environment(tmp_path / "home", **cluster_env(), MAHAVISHNU_SERVER__RESTART_BACKOFF="1s")
    n2_port = int(env["MAHAVISHNU_SERVER__PORT"]) + 1
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", n2_port))
    squatter.listen()
    log = (tmp_path / "up.log").open("w")
    process = subprocess.Popen(
        [MAHAVISHNU, "up", "--cluster", "3"], env=env, stdout=subprocess.PIPE, stderr=log, text=True
    )
    log.close()
    running = Running(process, env, tmp_path / "home")
    try:
        wait_until(lambda: '"msg": "cluster node did not start"' in running.log(), timeout=60, what="the failed node")
        line = next(line for line in running.log().splitlines() if "cluster node did not start" in line)
        assert '"node": "n2"' in line and f"client port {n2_port}" in line
        assert "already in use" in line and "free those ports" in line and "the other nodes keep running" in line
        assert process.poll() is None  # up runs on with n1 and n3

        squatter.close()  # n2's supervisor retries with backoff and starts it: the R3 streams come up
        ready = run("status", "--wait-ready", "60", env=env, timeout=90)
        assert ready.returncode == 0, ready.stderr
        # Then up finishes starting (read models, queries) and serves /ready: only from then on
        # does a SIGTERM stop it cleanly, with what it printed flushed.
        wait_until(lambda: _ready(env["MAHAVISHNU_METRICS__PORT"]), timeout=60, what="up's /ready")
    finally:
        squatter.close()
        code, out = running.stop() if process.poll() is None else (process.returncode, "")
        stop_up(running)
    assert code == 0
    assert f"warning: cluster node n2 (mahavishnu-n2: client port {n2_port}" in out
    assert "mesh is up: " in out and f"tls://127.0.0.1:{n2_port}" in out
