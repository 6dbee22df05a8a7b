"""The `mahavishnu` command run as a user runs it, for the CLI tests: environments, runs, a running `up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import free_port

MAHAVISHNU = str(Path(sys.executable).parent / "mahavishnu")


def environment(home: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")}
    ports: set[int] = set()
    while len(ports) < 4:  # a port freed by one free_port() may come back from the next
        ports.add(free_port())
    server, monitor, metrics, http = (str(port) for port in ports)
    env.update(
        MAHAVISHNU_HOME=str(home),
        MAHAVISHNU_SERVER__PORT=server,
        MAHAVISHNU_SERVER__MONITOR_PORT=monitor,
        MAHAVISHNU_METRICS__PORT=metrics,
        MAHAVISHNU_HTTP__PORT=http,
        MAHAVISHNU_LOGGING__LEVEL="warning",
    )
    env.update(overrides)
    return env


def run(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAHAVISHNU, *args], env=env, capture_output=True, text=True, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """A user mistake ends in exactly one line on stderr, starting with "error:", and no traceback."""
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@dataclass
class Running:
    process: subprocess.Popen[str]
    env: dict[str, str]
    home: Path

    def log(self) -> str:
        return (self.home.parent / "up.log").read_text()

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        # up's own stop is bounded: its services, then each server's 10 s grace; a cluster's
        # three on a loaded host took more than 30 s once (the MQTT cluster test).
        out, _ = self.process.communicate(timeout=60)
        return self.process.returncode, out


def scrape_metrics(running: Running) -> dict[str, float]:
    """`up`'s metrics as {'name{labels}': value}; empty while its probes are not listening yet."""
    url = f"http://127.0.0.1:{running.env['MAHAVISHNU_METRICS__PORT']}/metrics"
    samples: dict[str, float] = {}
    try:
        text = httpx.get(url, timeout=5).text
    except httpx.TransportError:
        return samples  # the probes start last, after the code index's worker pool
    for line in text.splitlines():
        if line.startswith("mahavishnu_"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def server_pid(running: Running) -> int | None:
    """The pid of the nats-server child `up` runs now (found by its configuration file), or None."""
    conf = str(running.home / "nats" / "server.conf").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if conf in (entry / "cmdline").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue  # gone meanwhile
    return None


def start_up(folder: Path, *args: str, **overrides: str) -> Running:
    """`mahavishnu up` in `folder`/home, ready; its log in `folder`/up.log."""
    env = environment(folder / "home", **overrides)
    log = (folder / "up.log").open("w")  # up's own log, readable while it runs (see Running.log)
    process = subprocess.Popen([MAHAVISHNU, "up", *args], env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()  # the child has its own descriptor
    running = Running(process, env, folder / "home")
    ready = run("status", "--wait-ready", "60", env=env, timeout=90)
    assert ready.returncode == 0, (ready.stderr, process.poll())
    return running


def stop_up(running: Running) -> None:
    process = running.process
    try:
        if process.poll() is None:  # a clean stop, so that up stops its nats-server child too
            process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)  # also for an up that exited by itself: it closes the pipe
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=30)
    finally:  # also when the stop timed out: a server left behind would outlive the whole run
        for pid_file in (running.home / "nats").glob("*.pid"):  # server.pid, or each cluster node's
            _stop_orphaned_server(pid_file)


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Running]:
    running = start_up(tmp_path)
    yield running
    stop_up(running)


def _stop_orphaned_server(pid_file: Path) -> None:
    """A killed `up` leaves its nats-server running (seen under load): stop it by its pid file."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"nats-server" in cmdline and str(pid_file.parent).encode() in cmdline:  # ours, not a reused pid
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass  # no pid file, or the server is gone already: nothing to stop
