"""A real OpenSSH sshd for tests: started on a free loopback port as the current user, keys in tmp_path.

    server = start_sshd(tmp_path / "sshd")     # host key, client key, authorized_keys, config
    ...                                        # server.port, server.host_key_line, server.client_key
    server.stop()

Readiness is sshd's own "Server listening on" line (with a deadline), never a sleep;
a server that dies is reported with its last lines.
"""

from __future__ import annotations

import collections
import contextlib
import getpass
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from tests.harness import free_port
from tests.tools import tool

PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; it must exist when sshd runs as root


def sshd_path() -> str:
    """sshd's path (often outside a user's PATH); skip without it, fail in CI (.ci/run installs it)."""
    return tool("sshd", also_in=("/usr/sbin", "/usr/local/sbin"))


def write_key(path: Path, algorithm: str = "ssh-ed25519", passphrase: str | None = None) -> asyncssh.SSHKey:
    """A new private key at `path` (0600) and its .pub beside it."""
    key = asyncssh.generate_private_key(algorithm)
    key.write_private_key(path, passphrase=passphrase)
    path.chmod(0o600)
    key.write_public_key(path.with_suffix(".pub"))
    return key


def public_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().split("\n")[0].strip()


@dataclass
class Sshd:
    folder: Path
    port: int
    process: subprocess.Popen[str]
    host_key: asyncssh.SSHKey
    client_key_path: Path
    lines: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=2000))
    user: str = field(default_factory=getpass.getuser)
    reader: threading.Thread | None = None

    @property
    def host_key_line(self) -> str:
        return public_line(self.host_key)

    def accepted(self) -> int:
        """Connections sshd authenticated so far (its own log lines)."""
        return sum("Accepted publickey" in line for line in list(self.lines))

    def stop(self) -> None:
        # Its per-connection children first: they run in sessions of their own and would hold stderr open.
        for child in _children(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=10)  # it reads to the end of sshd's output
        if self.process.stderr is not None and not (self.reader and self.reader.is_alive()):
            self.process.stderr.close()


def start_sshd(folder: Path, *, host_key: asyncssh.SSHKey | None = None, client_key_path: Path | None = None) -> Sshd:
    """sshd -D -e on 127.0.0.1 with its own host key and one authorized client key (made unless given)."""
    binary = sshd_path()
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    if host_key is None:
        host_key = write_key(folder / "ssh_host_ed25519_key")
    else:
        host_key.write_private_key(folder / "ssh_host_ed25519_key")
        (folder / "ssh_host_ed25519_key").chmod(0o600)
    if client_key_path is None:
        client_key_path = folder / "client_key"
        write_key(client_key_path)
    (folder / "authorized_keys").write_text(client_key_path.with_suffix(".pub").read_text())
    for attempt in range(5):  # a port free a moment ago may be taken by a parallel test
        port = free_port()
        config = folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {folder / 'ssh_host_ed25519_key'}",
                    f"AuthorizedKeysFile {folder / 'authorized_keys'}",
                    "PidFile none",
                    "StrictModes no",
                    "UsePAM no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "MaxStartups 100",
                    "MaxSessions 50",
                    "Subsystem sftp internal-sftp",  # the gateway copies update artifacts over SFTP
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        process = subprocess.Popen(
            [binary, "-D", "-e", "-f", str(config)],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # a group of its own, so stop() ends its session processes too
        )
        server = Sshd(folder, port, process, host_key, client_key_path)
        server.reader = threading.Thread(target=_collect, args=(process, server.lines), daemon=True)
        server.reader.start()
        if _wait_listening(server, timeout=15):
            return server
        server.stop()
        if not any("Address already in use" in line for line in server.lines) or attempt == 4:
            raise AssertionError(f"sshd did not start: {' | '.join(list(server.lines)[-5:])}")
    raise AssertionError("unreachable")


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _collect(process: subprocess.Popen[str], lines: collections.deque[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line.rstrip())


def _wait_listening(server: Sshd, *, timeout: float) -> bool:
    """True once sshd says it listens; False when it exited first; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any("Server listening on" in line for line in list(server.lines)):
            return True
        if server.process.poll() is not None:
            if server.reader is not None:
                server.reader.join(5)  # its output ends with the process: collect the last lines
            return False
        time.sleep(0.02)  # poll interval, bounded by the deadline
    raise AssertionError(f"sshd did not listen within {timeout} s: {' | '.join(list(server.lines)[-5:])}")
