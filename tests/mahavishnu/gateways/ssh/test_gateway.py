"""The SSH gateway against a real OpenSSH sshd on loopback and a real nats-server: lifecycle, pinning, limits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from core.config import SshSettings
from core.events import (
    AuditRecorded,
    CommandAccepted,
    CommandFailed,
    CommandIssued,
    CommandRunning,
    CommandSucceeded,
    Event,
    SshHostRegistered,
    encode,
)
from core.metrics import new_registry
from core.store import EventStore
from mahavishnu.control import commands
from mahavishnu.gateways.ssh import registration as ssh_devices
from mahavishnu.gateways.ssh.credentials import Credentials
from mahavishnu.gateways.ssh.errors import SshError
from mahavishnu.gateways.ssh.gateway import ACTOR, SshGateway
from mahavishnu.gateways.ssh.hosts import parse_host_key
from mahavishnu.gateways.ssh.metrics import SshMetrics
from projections.commands import Commands
from projections.devices import Devices
from projections.queries import CommandGet, DeviceGet, ReadModels, commands_get, devices_get
from projections.runner import ProjectionRunner
from tests.harness import Mesh
from tests.mahavishnu.sshd import Sshd, public_line, start_sshd
from tests.outcomes import follow_outcome
from tests.tools import tool
from tests.waiting import eventually, eventually_async, wait_until

FAST = SshSettings(connect_timeout=5, command_timeout=20, max_output=64 * 1024, idle_timeout=30)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def new_id() -> str:
    return f"ssh-{uuid.uuid4().hex[:8]}"


async def register(
    mesh: Mesh, store: EventStore, sshd: Sshd, device_id: str, *, allow: tuple[str, ...] = (), **changes: Any
) -> SshHostRegistered:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "host_key": parse_host_key(sshd.host_key_line),
        "trust": "pinned",
        "credentials": Credentials(sshd.client_key_path),
        "allow": list(allow),
    }
    return await ssh_devices.register(mesh.home, store, device_id, **{**options, **changes})


@contextlib.asynccontextmanager
async def serving(
    mesh: Mesh, store: EventStore, settings: SshSettings = FAST, metrics: SshMetrics | None = None
) -> AsyncIterator[SshGateway]:
    gateway = SshGateway(store, mesh.home.root, settings, metrics=metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        yield gateway
    finally:
        stop.set()
        await task


async def run(
    store: EventStore, device_id: str, name: str, args: dict[str, Any], *, timeout_s: float = 10
) -> commands.CommandView:
    command = await commands.send(store, device_id, name, args, ttl_s=60, timeout_s=timeout_s, actor="control")
    return await follow_outcome(store, command, deadline_s=60)


async def device_events(store: EventStore, device_id: str, what: str = "command") -> list[Event]:
    return [s.event async for s in store.read(f"mesh.evt.device.{device_id}.{what}") if s.event is not None]


async def test_a_command_runs_over_ssh_and_its_lifecycle_is_in_the_stream_and_read_model(
    mesh: Mesh, store: EventStore, sshd: Sshd, tmp_path: Path
) -> None:
    device_id = new_id()
    await register(mesh, store, sshd, device_id, allow=("uname -a",))
    async with serving(mesh, store):
        view = await run(store, device_id, "exec", {"argv": ["uname", "-a"]})
    assert view.state == "succeeded", view
    assert view.result["exit_code"] == 0 and view.result["stdout"].startswith("Linux")
    events = await device_events(store, device_id)
    assert [type(e) for e in events] == [CommandAccepted, CommandRunning, CommandSucceeded]
    assert {e.actor for e in events} == {ACTOR}
    key = "cd" * 32
    for projection in (Devices(), Commands()):
        runner = ProjectionRunner(projection, store, directory=tmp_path / "models", key=key)
        await runner.open()
        try:
            await runner.catch_up()
        finally:
            await runner.close()
    models = ReadModels(tmp_path / "models", key)
    row = await commands_get(models, CommandGet(id=view.command_id))
    assert row["state"] == "succeeded" and "Linux" in row["result"]["stdout"]
    device = await devices_get(models, DeviceGet(id=device_id))
    assert (device["transport"], device["endpoint"]) == ("ssh", f"{sshd.user}@127.0.0.1:{sshd.port}")
    assert device["host_key_fingerprint"] == parse_host_key(sshd.host_key_line).fingerprint


async def test_ping_checks_the_connection_and_unknown_or_unallowed_commands_are_rejected_unrun(
    mesh: Mesh, store: EventStore, sshd: Sshd
) -> None:
    device_id = new_id()
    await register(mesh, store, sshd, device_id, allow=("uname -a",))
    async with serving(mesh, store) as gateway:
        ping = await run(store, device_id, "ping", {})
        opened = sum(gateway.pool.stats.opened.values())
        unknown = await run(store, device_id, "reboot", {})
        unallowed = await run(store, device_id, "exec", {"argv": ["rm", "-rf", "/tmp/x"]})
        assert sum(gateway.pool.stats.opened.values()) == opened  # rejected before anything connected
    assert ping.state == "succeeded" and ping.result["pong"] is True
    assert ping.result["host_key"] == parse_host_key(sshd.host_key_line).fingerprint
    assert unknown.state == "rejected" and "no command 'reboot'" in unknown.detail
    assert unallowed.state == "rejected" and "not in this host's exec allowlist" in unallowed.detail
    assert "--allow 'rm -rf /tmp/x'" in unallowed.detail


async def test_a_changed_host_key_is_refused_naming_both_fingerprints_and_audited(
    mesh: Mesh, store: EventStore, sshd: Sshd
) -> None:
    device_id = new_id()
    old_key = public_line(asyncssh.generate_private_key("ssh-ed25519"))  # what was pinned before the host changed
    await register(mesh, store, sshd, device_id, allow=("uname -a",), host_key=parse_host_key(old_key))
    accepted = sshd.accepted()
    async with serving(mesh, store):
        view = await run(store, device_id, "exec", {"argv": ["uname", "-a"]})
    pinned, seen = parse_host_key(old_key).fingerprint, parse_host_key(sshd.host_key_line).fingerprint
    assert view.state == "failed"
    assert f"pinned {pinned}, seen {seen}" in view.detail and "refused" in view.detail
    assert sshd.accepted() == accepted  # refused before authenticating: the credentials were never offered
    audit = [s.event async for s in store.read("mesh.audit.ssh.>")]
    mismatches = [e for e in audit if isinstance(e, AuditRecorded) and e.target == device_id]
    assert [(e.action, e.details["pinned"], e.details["seen"]) for e in mismatches] == [
        ("ssh.host_key_mismatch", pinned, seen)
    ]


async def test_the_gateway_counts_connections_commands_by_outcome_and_host_key_refusals(
    mesh: Mesh, store: EventStore, sshd: Sshd
) -> None:
    trusted, changed = new_id(), new_id()
    await register(mesh, store, sshd, trusted, allow=("uname -a",))
    old_key = public_line(asyncssh.generate_private_key("ssh-ed25519"))
    await register(mesh, store, sshd, changed, allow=("uname -a",), host_key=parse_host_key(old_key))
    registry = new_registry(process_metrics=False)
    async with serving(mesh, store, metrics=SshMetrics(registry)) as gateway:
        ran = await run(store, trusted, "exec", {"argv": ["uname", "-a"]})
        unallowed = await run(store, trusted, "exec", {"argv": ["rm", "-rf", "/tmp/x"]})
        refused = await run(store, changed, "exec", {"argv": ["uname", "-a"]})
        # the trusted host's connection, idle in the pool (unless idle_timeout passed meanwhile: no timing here)
        assert registry.get_sample_value("mahavishnu_ssh_connections_open") == gateway.pool.open_total()

    def sample(name: str, outcome: str) -> float | None:
        return registry.get_sample_value(name, {"outcome": outcome})

    assert (ran.state, unallowed.state, refused.state) == ("succeeded", "rejected", "failed")
    connections = {o: sample("mahavishnu_ssh_connections_total", o) for o in ("opened", "host_key_refused")}
    assert connections == {"opened": 1.0, "host_key_refused": 1.0}
    assert sample("mahavishnu_ssh_connections_total", "auth_failed") == 0.0  # exported before the first
    commands = {o: sample("mahavishnu_ssh_commands_total", o) for o in ("succeeded", "rejected", "failed")}
    assert commands == {"succeeded": 1.0, "rejected": 1.0, "failed": 1.0}
    assert registry.get_sample_value("mahavishnu_ssh_connections_open") == 0  # the pool closed with the gateway


async def test_trust_on_first_use_only_when_asked(sshd: Sshd, tmp_path: Path) -> None:
    where = {"host": "127.0.0.1", "port": sshd.port, "timeout": 5.0}
    key, trust = await ssh_devices.resolve_host_key(host_key=None, host_key_file=None, trust_on_first_use=True, **where)
    assert (key.fingerprint, trust) == (parse_host_key(sshd.host_key_line).fingerprint, "tofu")
    with pytest.raises(SshError, match="--trust-on-first-use") as neither:
        await ssh_devices.resolve_host_key(host_key=None, host_key_file=None, trust_on_first_use=False, **where)
    assert "exactly one of" in str(neither.value)
    with pytest.raises(SshError, match="exactly one of"):
        await ssh_devices.resolve_host_key(
            host_key=sshd.host_key_line, host_key_file=None, trust_on_first_use=True, **where
        )
    pub = tmp_path / "host.pub"
    pub.write_text(f"127.0.0.1 {sshd.host_key_line}\n")  # a known_hosts line works too
    from_file, trust = await ssh_devices.resolve_host_key(
        host_key=None, host_key_file=pub, trust_on_first_use=False, **where
    )
    assert (from_file.line, trust) == (key.line, "pinned")


async def test_a_host_that_never_speaks_ssh_fails_at_the_connect_timeout(
    mesh: Mesh, store: EventStore, sshd: Sshd
) -> None:
    device_id = new_id()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP (backlog), never answers
        port = silent.getsockname()[1]
        await register(mesh, store, sshd, device_id, allow=("uname -a",), port=port)
        async with serving(mesh, store, SshSettings(connect_timeout=1, command_timeout=20)):
            started = time.monotonic()
            view = await run(store, device_id, "exec", {"argv": ["uname", "-a"]})
            took = time.monotonic() - started
    assert view.state == "failed"
    assert f"no SSH session with {sshd.user}@127.0.0.1:{port} within 1 s ([ssh] connect_timeout)" in view.detail
    assert took < 10


def running(*argv: str) -> bool:
    """Whether a process with exactly this command line runs on this machine (the sshd's host)."""
    wanted = "\0".join(argv).encode() + b"\0"
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if cmdline.read_bytes() == wanted:
                return True
    return False


async def test_a_command_longer_than_its_timeout_ends_timed_out_and_is_killed_on_the_host(
    mesh: Mesh, store: EventStore, sshd: Sshd
) -> None:
    device_id = new_id()
    seconds = f"{30 + uuid.uuid4().int % 1000 / 1000:.3f}"  # a command line no other test runs
    await register(mesh, store, sshd, device_id, allow=(f"sleep {seconds}",))
    async with serving(mesh, store):
        started = time.monotonic()
        view = await run(store, device_id, "exec", {"command": f"sleep {seconds}"}, timeout_s=1)
        took = time.monotonic() - started
    assert (view.state, view.detail) == ("timed_out", "ran longer than 1 s")
    assert took < 10
    await eventually(lambda: not running("sleep", seconds), timeout=10, what="the timed-out command to be killed")


async def test_output_over_the_cap_is_cut_and_marked(mesh: Mesh, store: EventStore, sshd: Sshd) -> None:
    device_id = new_id()
    await register(mesh, store, sshd, device_id, allow=("seq 1 100000",))
    async with serving(mesh, store, SshSettings(max_output=1000)):
        view = await run(store, device_id, "exec", {"argv": ["seq", "1", "100000"]})
    assert view.state == "succeeded"
    stdout = view.result["stdout"]
    assert view.result["stdout_truncated"] is True and view.result["stderr_truncated"] is False
    kept, marker = stdout.split("\n[truncated: ", 1)
    assert len(kept.encode()) == 1000 and stdout.startswith("1\n2\n3\n")
    assert (
        marker == f"{len(chr(10).join(map(str, range(1, 100001)))) + 1 - 1000} more bytes not kept, max_output is 1000]"
    )


async def test_the_pool_never_opens_more_than_its_limit_and_reuses_connections(
    mesh: Mesh, store: EventStore, sshd: Sshd
) -> None:
    device_id = new_id()
    await register(mesh, store, sshd, device_id, allow=("sleep 0.5",))
    accepted = sshd.accepted()
    async with serving(mesh, store, SshSettings(max_connections_per_host=2)) as gateway:
        sent = [
            await commands.send(store, device_id, "exec", {"command": "sleep 0.5"}, ttl_s=60, timeout_s=20, actor="c")
            for _ in range(8)
        ]
        views = [await follow_outcome(store, c, deadline_s=60) for c in sent]
        endpoint = ("127.0.0.1", sshd.port)
        stats = (gateway.pool.stats.peak[endpoint], gateway.pool.stats.opened[endpoint])
    assert [v.state for v in views] == ["succeeded"] * 8
    assert stats == (2, 2)  # the limit was reached, and each of the two connections ran several commands
    assert sshd.accepted() - accepted == 2  # sshd's own count of logins agrees


@dataclass
class Delivery:
    """A JetStream delivery, enough for the gateway's handle(): the same one can be delivered twice."""

    data: bytes
    subject: str
    acks: int = 0

    async def ack(self) -> None:
        self.acks += 1

    async def in_progress(self) -> None:
        pass

    async def term(self) -> None:
        raise AssertionError("a good command is never terminated")


async def test_a_redelivered_finished_command_is_acknowledged_without_running_again(
    mesh: Mesh, store: EventStore, sshd: Sshd
) -> None:
    device_id = new_id()
    await register(mesh, store, sshd, device_id, allow=("uname -a",))
    command = CommandIssued(
        command_id=f"c-{uuid.uuid4().hex[:12]}",
        device_id=device_id,
        name="exec",
        args={"argv": ["uname", "-a"]},
        ttl_s=60,
    )
    delivery = Delivery(encode(command), command.subject())
    async with serving(mesh, store) as gateway:
        await eventually(lambda: device_id in gateway.hosts, timeout=10, what="the gateway to know the host")
        await gateway.handle(device_id, delivery)  # type: ignore[arg-type]
        await gateway.handle(device_id, delivery)  # type: ignore[arg-type]
        assert gateway.ran == [command.command_id]

        async def reported() -> bool:
            return len(await device_events(store, device_id)) >= 3

        await eventually_async(reported, timeout=10, what="the outcome in the stream")
    assert delivery.acks == 2
    events = [e for e in await device_events(store, device_id) if isinstance(e, CommandSucceeded | CommandFailed)]
    assert len(events) == 1 and isinstance(events[0], CommandSucceeded)


@pytest.fixture
def ssh_agent(sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent holding the client key, as $SSH_AUTH_SOCK; HOME elsewhere, so no default key helps."""
    socket_path = tmp_path / "agent.sock"
    agent = subprocess.Popen([tool("ssh-agent"), "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        wait_until(socket_path.exists, timeout=10, what="ssh-agent's socket")
        env = {"SSH_AUTH_SOCK": str(socket_path), "PATH": os.environ.get("PATH", "")}
        added = subprocess.run([tool("ssh-add"), str(sshd.client_key_path)], env=env, capture_output=True, text=True)
        assert added.returncode == 0, added.stderr
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket_path))
        monkeypatch.setenv("HOME", str(tmp_path))
        yield socket_path
    finally:
        agent.terminate()
        agent.wait(timeout=10)


async def test_without_an_identity_file_the_gateway_logs_in_with_the_ssh_agent(
    mesh: Mesh, store: EventStore, sshd: Sshd, ssh_agent: Path
) -> None:
    device_id = new_id()
    registration = await register(mesh, store, sshd, device_id, allow=("uname -a",), credentials=Credentials())
    assert registration.auth == "agent"
    async with serving(mesh, store):
        view = await run(store, device_id, "exec", {"argv": ["uname", "-a"]})
    assert view.state == "succeeded", view
