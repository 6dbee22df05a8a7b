"""The remote terminal end to end: a real server with mTLS, a real agent, `mahavishnu shell` in a real PTY.

The broker runs in the test's process with limits of seconds (in `up` it is the same
object with [shell] settings; test_shell_up.py drives that one); the agent is the real
Agent with `/bin/sh` allowed; the operator's CLI is a separate process whose terminal
is a pseudo-terminal the test types into and reads from.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client

from core.store import EventStore, connect
from edge import load_agent_config
from edge.agent import Agent
from edge.shell import ShellHost
from mahavishnu.control import devices, operators
from mahavishnu.gateways.shell.broker import ShellBroker, start_shell_broker
from mahavishnu.gateways.shell.client import ShellClient
from mahavishnu.gateways.shell.errors import ShellError
from mahavishnu.gateways.shell.journal import SessionJournal
from mahavishnu.gateways.shell.session import Limits
from mahavishnu.gateways.shell.transcript import session_text
from tests.harness import Mesh
from tests.mahavishnu.cli_harness import MAHAVISHNU, environment
from tests.mahavishnu.shell_harness import (
    Terminal,
    add_operator,
    alive,
    closed_record,
    operator_connection,
    shell_records,
)
from tests.waiting import eventually

RELAXED = Limits(idle_s=60, max_s=120, owner_silence_s=30)


@dataclass
class Device:
    agent: Agent
    stop: asyncio.Event
    task: asyncio.Task[None]


@pytest.fixture
async def system(mesh: Mesh) -> AsyncIterator[Client]:
    client = await connect(mesh.home.system_identity(mesh.settings, mesh.port), name="system", reconnect=False)
    yield client
    await client.close()


@pytest.fixture
async def broker(
    mesh: Mesh, nc: Client, store: EventStore, system: Client
) -> AsyncIterator[Callable[[Limits], Awaitable[ShellBroker]]]:
    started: list[ShellBroker] = []

    async def start(limits: Limits = RELAXED, journal: SessionJournal | None = None) -> ShellBroker:
        running = await start_shell_broker(
            nc, resolve=operators.resolver(mesh.home), audit=store.audit, limits=limits, system=system, journal=journal
        )
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()


@pytest.fixture
async def device(mesh: Mesh, store: EventStore, tmp_path: Path) -> AsyncIterator[Device]:
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    enrolment = await devices.enroll(
        mesh.home, mesh.settings, store, device_id, out_dir=tmp_path / device_id, url=mesh.identity.url
    )
    with enrolment.agent_config.open("a") as config:
        config.write('shell_allowlist = ["/bin/sh"]\n')
    agent = Agent(load_agent_config(enrolment.agent_config))
    stop = asyncio.Event()
    running = Device(agent, stop, asyncio.create_task(agent.run(stop)))
    await eventually(lambda: agent.shells is not None, timeout=30, what="the agent to connect")
    yield running
    stop.set()
    await asyncio.wait_for(running.task, 30)


@pytest.fixture(scope="module")
def people(mesh: Mesh) -> dict[str, str]:
    """One operator per role, by role."""
    names = {role: f"{role}-{uuid.uuid4().hex[:6]}" for role in ("admin", "operator", "viewer", "auditor")}
    for role, name in names.items():
        add_operator(mesh, name, role)
    return names


@pytest.fixture
async def terminals(mesh: Mesh) -> AsyncIterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []
    env = environment(mesh.home.root)

    def open_terminal(device_id: str, name: str, *extra: str) -> Terminal:
        terminal = Terminal([device_id, "--as", name, "--server", mesh.identity.url, *extra], env)
        opened.append(terminal)
        return terminal

    yield open_terminal
    for terminal in opened:
        terminal.close()


async def open_shell(terminal: Terminal, device: Device) -> tuple[str, int, ShellHost]:
    """A session opened on `terminal`, the pid of its shell on the device (which the shell echoes), its host."""
    session = await terminal.session()
    await terminal.prompt()
    terminal.type("echo $$\r")
    shells = device.agent.shells
    assert shells is not None
    pid: int = shells.sessions[session].shell.pid  # type: ignore[union-attr]
    await terminal.expect(rf"^{pid}\r?$")
    return session, pid, shells


async def test_an_operator_runs_echo_hello_and_the_trail_holds_the_whole_session(
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
) -> None:
    await broker(RELAXED)
    name = people["operator"]
    terminal = terminals(device.agent.device_id, name)
    session = await terminal.session()
    await terminal.prompt()
    terminal.type("echo hello\r")
    await terminal.expect(r"^hello\r?$")  # the output line, not the echo of what was typed
    terminal.type("exit\r")
    assert await terminal.exit_code() == 0
    assert "the shell exited (status 0)" in terminal.text()

    closed = await closed_record(store, name, session)
    assert closed["details"]["reason"] == "exited"
    entries = await shell_records(store, name, session)
    assert entries[0]["action"] == "shell.open"
    opened = entries[0]["details"]
    assert (opened["shell"], opened["role"], entries[0]["target"]) == ("/bin/sh", "operator", device.agent.device_id)
    assert "echo hello\r" in session_text(entries, "input")
    assert "exit\r" in session_text(entries, "input")
    output = session_text(entries, "output")
    assert "\r\nhello\r\n" in output  # what the terminal printed, as the operator saw it
    assert entries[-1]["action"] == "shell.close"


@pytest.mark.parametrize("role", ["viewer", "auditor"])
async def test_viewers_and_auditors_are_refused_and_the_refusal_is_audited(
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
    role: str,
) -> None:
    await broker(RELAXED)
    name = people[role]
    terminal = terminals(device.agent.device_id, name)
    assert await terminal.exit_code() == 1
    assert f"error: {name} ({role}) may not open a remote terminal: only the admin and operator roles may" in (
        terminal.text()
    )
    assert not device.agent.shells or not device.agent.shells.sessions
    denied = [e for e in await shell_records(store, name) if e["outcome"] == "denied"]
    assert denied and denied[-1]["action"] == "shell.open" and denied[-1]["target"] == device.agent.device_id


async def test_a_shell_outside_the_devices_allowlist_is_refused(
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
) -> None:
    await broker(RELAXED)
    terminal = terminals(device.agent.device_id, people["admin"], "--shell", "/bin/bash")
    assert await terminal.exit_code() == 1
    assert "the shell '/bin/bash' is not in this device's shell_allowlist (/bin/sh)" in terminal.text()


async def test_an_offline_device_is_named(
    broker: Callable[[Limits], Awaitable[ShellBroker]], people: dict[str, str], terminals: Callable[..., Terminal]
) -> None:
    await broker(RELAXED)
    terminal = terminals("dev-nowhere", people["admin"])
    assert await terminal.exit_code() == 1
    assert "device dev-nowhere is offline" in terminal.text()


async def test_another_connection_cannot_type_into_or_read_the_session(
    mesh: Mesh,
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
    tmp_path: Path,
) -> None:
    await broker(RELAXED)
    name = people["operator"]
    terminal = terminals(device.agent.device_id, name)
    session = await terminal.session()
    await terminal.prompt()
    marker = tmp_path / "typed-by-someone-else"
    other = await operator_connection(mesh, name)  # the same person's certificate, another connection
    try:
        client = ShellClient(other)
        with pytest.raises(ShellError) as typed:
            await client.send(session, f"touch {marker}\r".encode())
        with pytest.raises(ShellError) as read:
            await client.read(session, 0)
        with pytest.raises(ShellError) as closed:
            await client.close(session)
    finally:
        await other.close()
    for refused in (typed, read, closed):
        assert refused.value.code == "403"
        assert "belongs to the connection that opened it" in str(refused.value)
    terminal.type("echo still-mine\r")
    await terminal.expect(r"^still-mine\r?$")  # the owner's session goes on
    assert not marker.exists()
    denied = [e for e in await shell_records(store, name, session) if e["outcome"] == "denied"]
    assert [e["action"] for e in denied] == ["shell.input", "shell.read", "shell.close"]


async def test_the_idle_timeout_closes_the_session(
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
) -> None:
    await broker(Limits(idle_s=1.5, max_s=60, owner_silence_s=30))
    name = people["operator"]
    terminal = terminals(device.agent.device_id, name)
    session = await terminal.session()
    opened = time.monotonic()
    assert await terminal.exit_code() == 1
    assert time.monotonic() - opened >= 1.4
    assert "closed after 1500ms without a keystroke (idle timeout)" in terminal.text()
    assert (await closed_record(store, name, session))["details"]["reason"] == "idle_timeout"
    await eventually(lambda: not device.agent.shells or not device.agent.shells.sessions, timeout=10, what="the end")


async def test_the_maximum_duration_closes_a_session_in_use(
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
) -> None:
    await broker(Limits(idle_s=60, max_s=2, owner_silence_s=30))
    name = people["admin"]
    terminal = terminals(device.agent.device_id, name)
    session = await terminal.session()
    opened = time.monotonic()
    await terminal.prompt()
    n = 0
    while terminal.process.poll() is None:  # keep typing, never idle, until the session is closed
        terminal.type(f"echo tick-{n}\r")
        line = f"\ntick-{n}\r\n"
        await eventually(
            lambda line=line: line in terminal.text() or terminal.process.poll() is not None, timeout=30, what=line
        )
        n += 1
    assert time.monotonic() - opened >= 1.9
    assert n > 3
    assert await terminal.exit_code() == 1
    assert "closed after 2s (the maximum duration of a session)" in terminal.text()
    assert (await closed_record(store, name, session))["details"]["reason"] == "max_duration"


async def test_the_owners_disconnect_closes_the_session_and_ends_the_shell_on_the_device(
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
) -> None:
    await broker(RELAXED)  # owner_silence_s 30: only the disconnect can close it in time
    name = people["operator"]
    terminal = terminals(device.agent.device_id, name)
    session, pid, shells = await open_shell(terminal, device)
    assert alive(pid)
    killed = time.monotonic()
    os.killpg(terminal.process.pid, signal.SIGKILL)  # the operator's CLI dies: its connection drops

    closed = await closed_record(store, name, session)
    assert closed["details"]["reason"] == "owner_disconnected"
    await eventually(lambda: session not in shells.sessions and not alive(pid), timeout=10, what="the shell to end")
    assert time.monotonic() - killed < 10


async def test_a_session_whose_agent_stops_is_closed_and_says_so(
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
) -> None:
    await broker(RELAXED)
    name = people["operator"]
    terminal = terminals(device.agent.device_id, name)
    session = await terminal.session()
    device.stop.set()  # the agent stops (SIGTERM on a device): it ends its shells on the way out
    assert await terminal.exit_code() == 1
    assert "closed: the device's agent went away or lost the session" in terminal.text()
    assert (await closed_record(store, name, session))["details"]["reason"] == "device_lost"


async def test_a_stopping_mesh_closes_its_sessions_and_says_so(
    broker: Callable[[Limits], Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
) -> None:
    running = await broker(RELAXED)
    name = people["admin"]
    terminal = terminals(device.agent.device_id, name)
    session = await terminal.session()
    shells = device.agent.shells
    assert shells is not None and session in shells.sessions
    await running.stop()  # what `up` does on SIGTERM
    assert await terminal.exit_code() == 1
    assert "closed: the mesh is stopping" in terminal.text()
    assert (await closed_record(store, name, session))["details"]["reason"] == "mesh_stopping"
    assert session not in shells.sessions


def crashing_broker(mesh: Mesh, journal: Path) -> subprocess.Popen[str]:
    """A broker in a process of its own (as in `up`), serving once it said so."""
    where = (str(mesh.home.root), str(mesh.port), str(journal))
    module = "tests.mahavishnu.gateways.shell.broker_process"
    root = Path(__file__).resolve().parents[4]  # where `tests` imports from
    process = subprocess.Popen([sys.executable, "-m", module, *where], stdout=subprocess.PIPE, text=True, cwd=root)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready", process.poll()
    return process


async def test_a_session_whose_broker_crashed_is_ended_by_the_next_broker_and_says_so(
    mesh: Mesh,
    broker: Callable[..., Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    store: EventStore,
    tmp_path: Path,
) -> None:
    """ADR 0010: a session does not outlive its broker's process; after a crash the next broker ends it."""
    journal = SessionJournal(tmp_path / "shell" / "sessions.json")
    first = crashing_broker(mesh, journal.path)
    try:
        name = people["operator"]
        terminal = terminals(device.agent.device_id, name)
        session, pid, shells = await open_shell(terminal, device)
        assert [(e.session, e.device, e.identity) for e in journal.load()] == [(session, device.agent.device_id, name)]
        assert journal.path.stat().st_mode & 0o077 == 0
    finally:
        first.kill()  # SIGKILL: nothing of the broker ends anything
        first.communicate(timeout=30)
    assert alive(pid) and session in shells.sessions  # the shell runs on, its owner still connected

    await broker(RELAXED, journal=journal)  # the broker of the next `up`, with the same journal
    assert await terminal.exit_code() == 1
    assert "closed: the mesh's terminal broker restarted" in terminal.text()
    closed = await closed_record(store, name, session)
    assert closed["details"]["reason"] == "broker_restarted" and closed["details"]["duration_s"] > 0
    await eventually(lambda: session not in shells.sessions and not alive(pid), timeout=10, what="the shell to end")
    assert journal.load() == []  # ended and recorded: nothing left for a broker after this one


async def test_a_clean_stop_leaves_no_session_in_the_journal(
    broker: Callable[..., Awaitable[ShellBroker]],
    device: Device,
    people: dict[str, str],
    terminals: Callable[..., Terminal],
    tmp_path: Path,
) -> None:
    journal = SessionJournal(tmp_path / "sessions.json")
    running = await broker(RELAXED, journal=journal)
    terminal = terminals(device.agent.device_id, people["admin"])
    session = await terminal.session()
    assert [e.session for e in journal.load()] == [session]
    await running.stop()
    assert await terminal.exit_code() == 1
    assert journal.load() == []


async def test_a_request_from_inside_the_mesh_names_no_person_and_is_refused(
    broker: Callable[[Limits], Awaitable[ShellBroker]], device: Device, nc: Client
) -> None:
    await broker(RELAXED)
    with pytest.raises(ShellError) as refused:
        await ShellClient(nc).open(device.agent.device_id)  # the control identity: no Nats-Request-Info
    assert refused.value.code == "403"
    assert "the remote terminal is for operators" in str(refused.value)
    assert device.agent.shells is not None and not device.agent.shells.sessions


async def test_a_session_through_the_client_library_resizes_and_reads_in_order(
    mesh: Mesh, broker: Callable[[Limits], Awaitable[ShellBroker]], device: Device, people: dict[str, str]
) -> None:
    await broker(RELAXED)
    connection = await operator_connection(mesh, people["operator"])
    try:
        client = ShellClient(connection)
        opened = await client.open(device.agent.device_id, rows=30, cols=100)
        await client.resize(opened.session, 40, 120)
        await client.send(opened.session, b"stty size; exit 5\r")
        printed, after = b"", 0
        while True:
            output = await client.read(opened.session, after)
            assert output.offset == after  # nothing skipped, nothing twice
            printed += output.data
            after += len(output.data)
            if output.ended:
                break
    finally:
        await connection.close()
    assert b"40 120\r\n" in printed  # typed before the prompt showed: the prompt may precede it
    assert (output.reason, output.exit_code) == ("exited", 5)


async def test_without_a_terminal_stdin_is_typed_and_its_end_is_ctrl_d(
    mesh: Mesh, broker: Callable[[Limits], Awaitable[ShellBroker]], device: Device, people: dict[str, str]
) -> None:
    await broker(RELAXED)
    process = await asyncio.create_subprocess_exec(
        MAHAVISHNU,
        "shell",
        device.agent.device_id,
        "--as",
        people["operator"],
        "--server",
        mesh.identity.url,
        env=environment(mesh.home.root),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(b"echo piped-$((6*7))\n"), 60)
    assert process.returncode == 0, err
    assert b"piped-42" in out
    assert b"the shell exited (status 0)" in err


async def test_refusals_travel_in_micros_error_headers(
    mesh: Mesh, broker: Callable[[Limits], Awaitable[ShellBroker]], people: dict[str, str]
) -> None:
    await broker(RELAXED)
    connection = await operator_connection(mesh, people["operator"])
    missing = "0" * 32
    try:  # what `nats req` sees: an input is answered by micro itself, a read from the task that waited for output
        replies = [
            await connection.request(f"mesh.shell.input.{missing}", b"ls\r", timeout=10),
            await connection.request(f"mesh.shell.read.{missing}", b'{"after": 0}', timeout=10),
        ]
    finally:
        await connection.close()
    for reply in replies:
        headers = reply.headers or {}
        assert headers.get("Nats-Service-Error-Code") == "404"
        assert headers.get("Nats-Service-Error", "").startswith(f"no session {missing}: it ended long ago")
        assert reply.data == b""
