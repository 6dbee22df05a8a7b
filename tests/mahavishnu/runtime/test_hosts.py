"""A cluster across hosts, emulated on loopback: three `up --node` processes, each with its own state
directory on its own address (127.0.0.1, 127.0.0.2, 127.0.0.3), from the bundles of `cluster init`.

As the loopback cluster's test does, events are appended through the bulk path while one
node's nats-server is killed with -9; every acknowledged event must be stored once, the
read models of the control host's node must catch up, and the node's own `up` must bring
its server back. Backup and restore then run against the cluster, and every `up` stops
cleanly on a group signal.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import settings_for
from core.errors import StoreError
from core.events import MeshStarted, TelemetryReported
from core.store import EventStore, Identity, connect
from core.updates.naming import BUCKET_STREAMS
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.streams import streams_of
from tests.harness import free_port
from tests.mahavishnu.cli_harness import MAHAVISHNU, one_line_error, run
from tests.mahavishnu.runtime.test_cluster import (
    DEVICE,
    _append_through_a_kill,
    _devices_status,
    _projections_caught_up,
    _stored_ids,
)
from tests.waiting import eventually, eventually_async

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
EVENTS = 20_000


def _free_everywhere() -> int:
    """A port free on each of the three loopback addresses (every node listens on the same ports)."""
    while True:
        port = free_port()
        try:
            for host in HOSTS:
                with socket.socket() as probe:
                    probe.bind((host, port))
        except OSError:
            continue
        return port


def _host_env(home: Path, **overrides: str) -> dict[str, str]:
    """A host's environment: its state directory; its [server] settings come from its bundle's mahavishnu.toml."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")}
    env.update(
        MAHAVISHNU_HOME=str(home),
        MAHAVISHNU_SERVER__MONITOR_PORT="0",  # one machine: the three monitors would share 127.0.0.1's port
        MAHAVISHNU_METRICS__PORT="0",
        MAHAVISHNU_HTTP__PORT="0",
        MAHAVISHNU_LOGGING__LEVEL="info",
    )
    env.update(overrides)
    return env


@dataclass
class HostUp:
    host: str
    home: Path
    env: dict[str, str]
    bundle: Path
    process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        log = (self.home.parent / "up.log").open("a")
        self.process = subprocess.Popen(
            [MAHAVISHNU, "up", "--node", str(self.bundle)],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,  # a group of its own: stopped below as a terminal's Ctrl-C would
        )
        log.close()

    def log(self) -> str:
        return (self.home.parent / "up.log").read_text()

    def server_pid(self) -> int | None:
        try:
            pid = int((self.home / "nats" / "server.pid").read_text().strip())
            return pid if b"nats-server" in Path(f"/proc/{pid}/cmdline").read_bytes() else None
        except (OSError, ValueError):
            return None

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C to its process group; its exit code and what it printed."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        out, _ = self.process.communicate(timeout=60)
        return self.process.returncode, out

    def kill(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.communicate(timeout=30)  # also for an up that exited by itself: it closes the pipe
        pid = self.server_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[HostUp]]:
    """The bundles of a three-host cluster, written on the control host (127.0.0.1), and a host for each."""
    port, route = _free_everywhere(), _free_everywhere()
    control = tmp_path / "h1" / "home"
    made = run(
        "cluster",
        "init",
        "--hosts",
        ",".join(HOSTS),
        "--out",
        str(tmp_path / "bundles"),
        env=_host_env(control, MAHAVISHNU_SERVER__PORT=str(port), MAHAVISHNU_SERVER__CLUSTER_PORT=str(route)),
    )
    assert made.returncode == 0, made.stderr
    nodes = [
        HostUp(host, tmp_path / f"h{k}" / "home", _host_env(tmp_path / f"h{k}" / "home"), tmp_path / "bundles" / host)
        for k, host in enumerate(HOSTS, start=1)
    ]
    yield nodes
    for node in nodes:
        node.kill()


def _identity(node: HostUp, first: int) -> Identity:
    """The control identity, dialling node `first` (0-based) first and the others as alternates."""
    settings = settings_for(node.home, node.env)
    base = Home(node.home).control_identity(settings)
    port = settings.server.port
    urls = [f"tls://{host}:{port}" for host in HOSTS]
    return Identity(urls[first], base.ca, base.cert, base.key, alternates=tuple(urls[:first] + urls[first + 1 :]))


async def _nodes_started(store: EventStore) -> set[str]:
    return {s.event.node async for s in store.read("mesh.evt.mesh.started") if isinstance(s.event, MeshStarted)}


async def _streams_cluster_info(node: HostUp) -> dict[str, object]:
    """Each stream's leader and replicas as the cluster reports them: what a failed backup is read with."""
    nc = await connect(_identity(node, first=0), name="test-diagnosis")
    try:
        return {
            name: json.loads((await nc.request(f"$JS.API.STREAM.INFO.{name}", b"", timeout=5)).data).get("cluster")
            for name in ("EVENTS", "COMMANDS", "AUDIT")
        }
    finally:
        await nc.close()


def _pid_changed(node: HostUp, old: int) -> bool:
    pid = node.server_pid()
    return pid is not None and pid != old


@pytest.mark.slow
async def test_three_hosts_keep_every_event_through_a_kill_back_up_restore_and_stop_cleanly(
    hosts: list[HostUp], tmp_path: Path
) -> None:
    control, _, third = hosts
    for node in hosts:
        node.start()
    # `up --node` installs the bundle's settings where the home has none: from then on every command knows its node.
    settings_file = control.home / "mahavishnu.toml"
    await eventually(settings_file.is_file, timeout=60, what="the control host's settings from its bundle")
    ready = run("status", "--wait-ready", "120", env=control.env, timeout=150)
    assert ready.returncode == 0, (ready.stderr, control.log()[-2000:])

    settings = settings_for(control.home, control.env)
    nc = await connect(_identity(control, first=2), name="test-appender")  # on the node that is killed
    try:
        store = EventStore(nc, streams_of(settings))

        async def all_started() -> bool:
            try:
                return await _nodes_started(store) >= {"mahavishnu-n1", "mahavishnu-n2", "mahavishnu-n3"}
            except StoreError:  # a read of a cluster still electing its leaders is done again
                return False

        await eventually_async(all_started, timeout=60, what="mesh.started from every node")
        info = json.loads((await nc.request("$JS.API.STREAM.INFO.EVENTS", b"", timeout=5)).data)
        assert info["config"]["num_replicas"] == 3 and len(info["cluster"]["replicas"]) == 2
        for bucket in BUCKET_STREAMS:  # the updates' artifacts and signed metadata, replicated like the streams
            info = json.loads((await nc.request(f"$JS.API.STREAM.INFO.{bucket}", b"", timeout=5)).data)
            assert info["config"]["num_replicas"] == 3, (bucket, info)

        events = [TelemetryReported(device_id=DEVICE, metrics={"i": float(i)}) for i in range(EVENTS)]
        killed: list[int] = []

        def kill_third() -> None:
            pid = third.server_pid()
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        await _append_through_a_kill(store, events, kill_third)
        counts = await _stored_ids(store)
        assert set(counts) == {e.event_id for e in events} and max(counts.values()) == 1
        # The last of these events, not of the stream: whatever lands after them (another service's
        # event) is not on the devices model's subjects, so its position would never reach it.
        last_seq = await store.last_subject_sequence(events[-1].subject())
        try:
            await eventually_async(
                lambda: _projections_caught_up(store, Home(control.home), last_seq),
                timeout=120,
                what="the control host's devices read model",
            )
        except AssertionError as late:  # with what the read model, the streams and up said then
            status = await _devices_status(store, Home(control.home))
            cluster = await _streams_cluster_info(control)
            raise AssertionError((str(late), last_seq, status, cluster, control.log()[-4000:])) from None
        await eventually(lambda: _pid_changed(third, killed[0]), timeout=60, what="node n3 to be restarted")
        assert '"server": "mahavishnu-n3", "exit_code": -9' in third.log()
    finally:
        await nc.close()

    # A backup of the running cluster, through the control host's up.
    saved = run("backup", str(tmp_path / "backup"), env=control.env, timeout=120)
    assert saved.returncode == 0, (saved.stderr, await _streams_cluster_info(control))
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    events_saved = manifest["streams"]["EVENTS"]["state"]["messages"]
    assert events_saved >= EVENTS + 3

    # Ctrl-C to each host's up: each stops cleanly, none restarts its server on the way out.
    for node in hosts:
        before = len(node.log())
        code, out = node.interrupt()
        assert code == 0, node.log()[-3000:]
        assert "mesh stopped" in out or "node stopped" in out
        assert "exited unexpectedly" not in node.log()[before:] and "Traceback" not in node.log()

    # Restore into empty stores: the other hosts' nodes run, the control host restores.
    for node in hosts:
        shutil.move(node.home / "jetstream", node.home.parent / "jetstream.old")
    for node in hosts[1:]:
        node.start()
    restored = run("restore", str(tmp_path / "backup"), env=control.env, timeout=180)
    assert restored.returncode == 0, restored.stderr
    assert f"EVENTS: {events_saved} messages restored" in restored.stdout
    for node in hosts[1:]:
        code, _ = node.interrupt()
        assert code == 0, node.log()[-3000:]


def test_a_bundle_for_another_host_refuses_to_start_naming_the_host_and_this_machine(
    hosts: list[HostUp], tmp_path: Path
) -> None:
    bundle = hosts[1].bundle
    node = json.loads((bundle / "node" / "node.json").read_text())
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(bundle, elsewhere)
    node["host"] = "192.0.2.10"  # TEST-NET-1: never an address of this machine
    (elsewhere / "node" / "node.json").write_text(json.dumps(node))
    line = one_line_error(run("up", "--node", str(elsewhere), env=hosts[1].env))
    assert "192.0.2.10" in line and f"not an address of this machine ({socket.gethostname()})" in line
    assert not (hosts[1].home / "node").exists()  # refused before anything was installed


def test_a_bundle_whose_certificate_is_another_hosts_refuses_to_start_naming_both(
    hosts: list[HostUp], tmp_path: Path
) -> None:
    swapped = tmp_path / "swapped"
    shutil.copytree(hosts[2].bundle, swapped)
    shutil.copy(hosts[1].bundle / "node" / "cert.pem", swapped / "node" / "cert.pem")
    line = one_line_error(run("up", "--node", str(swapped), env=hosts[2].env))
    assert "its certificate names 127.0.0.2, not the node's host 127.0.0.3" in line


def test_the_control_hosts_bundle_refuses_another_state_directory(hosts: list[HostUp]) -> None:
    line = one_line_error(run("up", "--node", str(hosts[0].bundle), env=hosts[1].env))
    assert "the control host's node (127.0.0.1)" in line and str(hosts[1].home) in line


def test_cluster_init_refuses_two_hosts(tmp_path: Path) -> None:
    line = one_line_error(run("cluster", "init", "--hosts", "a,b", env=_host_env(tmp_path / "home")))
    assert "a cluster has 3 or 5" in line
