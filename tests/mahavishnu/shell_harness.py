"""What the remote terminal tests drive: `mahavishnu shell` in a real pseudo-terminal, people, a broker."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from core import subjects
from core.events import AuditRecorded
from core.store import EventStore, Identity, connect
from mahavishnu.control import operators
from tests.harness import Mesh
from tests.mahavishnu.cli_harness import MAHAVISHNU
from tests.waiting import eventually, wait_until

BANNER = re.compile(rb"session ([0-9a-f]{32});")


class Terminal:
    """`mahavishnu shell ARGS` with a pseudo-terminal as its stdin, stdout and stderr; the test is the keyboard."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.process = subprocess.Popen(
            [MAHAVISHNU, "shell", *args], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.output = bytearray()
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            self.output += os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the CLI is gone and nobody holds the terminal
            asyncio.get_running_loop().remove_reader(self.master)

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def text(self) -> str:
        return self.output.decode(errors="replace")

    async def expect(self, pattern: str, *, timeout: float = 30) -> re.Match[str]:
        found = await eventually(
            lambda: re.search(pattern, self.text(), re.MULTILINE),
            timeout=timeout,
            what=f"{pattern!r} in {self.text()!r}",
        )
        return found

    async def session(self) -> str:
        match = await eventually(
            lambda: BANNER.search(bytes(self.output)), timeout=60, what=f"the banner: {self.text()!r}"
        )
        return match.group(1).decode()

    async def prompt(self) -> None:
        """Wait for the remote shell's prompt ("# " or "$ "), so that what is typed next is echoed after it."""
        await self.expect(r"[#$] $")

    async def exit_code(self, *, timeout: float = 30) -> int:
        try:
            await eventually(lambda: self.process.poll() is not None, timeout=timeout, what="the CLI to exit")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the terminal shows {self.text()!r}") from None
        self._drain()  # what the CLI wrote last
        return int(self.process.returncode)

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # nothing more now (EAGAIN), or nobody holds the terminal any more (EIO)
                return
            if not data:
                return
            self.output += data

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.master)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        os.close(self.master)


def reloads(mesh: Mesh) -> int:
    return sum("Reloaded server configuration" in line for line in mesh.server.recent)


def add_operator(mesh: Mesh, name: str, role: str) -> Path:
    """An operator with `role`, its files where `mahavishnu shell --as NAME` looks; once the server knows it."""
    before = reloads(mesh)
    folder = mesh.home.root / "operators" / name
    operators.add(mesh.home, mesh.settings, name, role, out_dir=folder)
    wait_until(lambda: reloads(mesh) > before, timeout=10, what="the reload")
    return folder


async def operator_connection(mesh: Mesh, name: str) -> Client:
    folder = mesh.home.root / "operators" / name
    return await connect(
        Identity(mesh.identity.url, folder / "ca.pem", folder / "cert.pem", folder / "key.pem"),
        name=f"{name}-other",
        reconnect=False,
        inbox_prefix=subjects.inbox_prefix(name),
    )


async def shell_records(store: EventStore, actor: str, session: str | None = None) -> list[dict[str, Any]]:
    """The audit trail's shell entries of `actor` (of one session), as dicts."""
    entries = []
    async for stored in store.read(subjects.audit("shell", actor)):
        event = stored.event
        if isinstance(event, AuditRecorded) and (session is None or event.details.get("session") == session):
            entries.append(
                {"action": event.action, "outcome": event.outcome, "target": event.target, "details": event.details}
            )
    return entries


async def closed_record(store: EventStore, actor: str, session: str) -> dict[str, Any]:
    """Wait for the session's shell.close entry: after it, the whole session is in the trail."""
    found: list[dict[str, Any]] = []

    async def look() -> bool:
        found[:] = [e for e in await shell_records(store, actor, session) if e["action"] == "shell.close"]
        return bool(found)

    deadline = asyncio.get_running_loop().time() + 30
    while not await look():
        assert asyncio.get_running_loop().time() < deadline, "no shell.close entry within 30 s"
        await asyncio.sleep(0.1)  # poll interval, bounded by the deadline above
    return found[0]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not count: it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
