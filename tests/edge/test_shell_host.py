"""The agent's side of the remote terminal on a real server, with no broker: the device's own rules."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from core import subjects
from core.store import EventStore, Identity, connect
from edge.shell import ShellHost
from edge.shell_protocol import (
    ShellControl,
    ShellEnded,
    ShellReply,
    control_subject,
    encode,
    end_subject,
    ended_decoder,
    input_subject,
    output_subject,
    reply_decoder,
)
from mahavishnu.control import devices
from tests.harness import Mesh
from tests.mahavishnu.shell_harness import alive
from tests.waiting import eventually, eventually_async


@dataclass
class Seen:
    output: bytearray = field(default_factory=bytearray)
    ended: list[ShellEnded] = field(default_factory=list)


@dataclass
class Host:
    host: ShellHost
    device_id: str
    control: Client

    async def ask(self, **fields: object) -> ShellReply:
        reply = await self.control.request(
            control_subject(self.device_id),
            encode(ShellControl(**fields)),
            timeout=10,  # type: ignore[arg-type]
        )
        return reply_decoder.decode(reply.data)

    async def watch(self, session: str) -> Seen:
        seen = Seen()

        async def on_output(msg: Msg) -> None:
            seen.output += msg.data

        async def on_end(msg: Msg) -> None:
            seen.ended.append(ended_decoder.decode(msg.data))

        await self.control.subscribe(output_subject(self.device_id, session), cb=on_output)
        await self.control.subscribe(end_subject(self.device_id, session), cb=on_end)
        return seen

    async def type(self, session: str, text: str) -> None:
        await self.control.publish(input_subject(self.device_id, session), text.encode())


@pytest.fixture
async def host(mesh: Mesh, store: EventStore, nc: Client, tmp_path: Path) -> AsyncIterator[Host]:
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / device_id
    await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=folder, url=mesh.identity.url)
    device = await connect(
        Identity(mesh.identity.url, folder / "ca.pem", folder / "cert.pem", folder / "key.pem"),
        name=device_id,
        reconnect=False,
        inbox_prefix=subjects.device_inbox_prefix(device_id),
    )
    running = ShellHost(device, device_id, ("/bin/sh",), max_sessions=1, grace_s=0.2)
    await running.start()
    host = Host(running, device_id, nc)

    async def answered() -> bool:  # the control connection reaches the device (seen to lag a reload under load)
        try:
            await host.ask(op="ping", session=session_id())
        except nats.errors.NoRespondersError:
            return False
        return True

    await eventually_async(answered, timeout=30, what="the device's control subject to be reachable")
    yield host
    await running.stop()
    await device.close()


def session_id() -> str:
    return uuid.uuid4().hex


async def test_a_shell_runs_in_a_pty_and_its_output_comes_back_in_order(host: Host) -> None:
    session = session_id()
    seen = await host.watch(session)
    opened = await host.ask(op="open", session=session)
    assert opened.ok and opened.shell == "/bin/sh" and alive(opened.pid)
    await host.type(session, "tty; seq 1 3000\r")
    await eventually(lambda: b"\r\n3000\r\n" in seen.output, timeout=30, what="the end of seq's output")
    text = seen.output.decode()
    assert re.search(r"/dev/pts/\d+\r\n", text)  # a real terminal, not a pipe
    numbers = [int(n) for n in re.findall(r"^(\d+)\r$", text, re.MULTILINE)]
    assert numbers == list(range(1, 3001))  # every line, in order
    assert (await host.ask(op="close", session=session)).ok
    await eventually(lambda: seen.ended, timeout=10, what="the end message")
    assert seen.ended[0].reason == "closed"
    await eventually(lambda: not alive(opened.pid), timeout=10, what="the shell to be gone")


async def test_the_shell_exiting_ends_the_session_with_its_status(host: Host) -> None:
    session = session_id()
    seen = await host.watch(session)
    assert (await host.ask(op="open", session=session)).ok
    await host.type(session, "exit 7\r")
    await eventually(lambda: seen.ended, timeout=10, what="the end message")
    assert seen.ended == [ShellEnded(reason="exited", exit_code=7)]
    assert not host.host.sessions


@pytest.mark.parametrize(
    ("shell", "reason"),
    [
        ("/bin/bash", "the shell '/bin/bash' is not in this device's shell_allowlist (/bin/sh)"),
        ("sh", "not in this device's shell_allowlist"),
    ],
)
async def test_only_shells_on_the_allowlist_start(host: Host, shell: str, reason: str) -> None:
    refused = await host.ask(op="open", session=session_id(), shell=shell)
    assert not refused.ok and reason in refused.error
    assert not host.host.sessions


async def test_a_device_without_an_allowlist_runs_no_shell(host: Host) -> None:
    host.host.allowlist = ()
    refused = await host.ask(op="open", session=session_id())
    assert not refused.ok and "allows no shells" in refused.error


async def test_at_most_max_sessions_at_once(host: Host) -> None:
    assert (await host.ask(op="open", session=session_id())).ok
    refused = await host.ask(op="open", session=session_id())
    assert not refused.ok and "runs 1 shells already" in refused.error


async def test_the_agent_ends_an_idle_session_by_itself_when_no_broker_does(host: Host) -> None:
    session = session_id()
    seen = await host.watch(session)
    opened = await host.ask(op="open", session=session, idle_s=0.3, max_s=60)
    assert opened.ok
    await eventually(lambda: seen.ended, timeout=10, what="the agent's own idle limit")
    assert seen.ended[0].reason == "idle_timeout"
    await eventually(lambda: not alive(opened.pid), timeout=10, what="the shell to be gone")


async def test_pings_and_closes_of_unknown_sessions_are_answered_no(host: Host) -> None:
    assert not (await host.ask(op="ping", session=session_id())).ok
    bad = await host.ask(op="open", session="not-a-session")
    assert not bad.ok and "32 lowercase hex" in bad.error


async def test_the_window_size_is_the_terminals_and_follows_a_resize(host: Host) -> None:
    session = session_id()
    seen = await host.watch(session)
    assert (await host.ask(op="open", session=session, rows=30, cols=100)).ok
    await host.type(session, "stty size\r")
    await eventually(lambda: b"30 100\r\n" in seen.output, timeout=30, what="the opening size")
    assert (await host.ask(op="resize", session=session, rows=40, cols=120)).ok
    await host.type(session, "stty size\r")
    await eventually(lambda: b"40 120\r\n" in seen.output, timeout=30, what="the new size")
