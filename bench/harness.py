"""What the benchmarks share: a mesh of their own in a temporary state directory, `up` running in it, children.

    with bench_mesh() as mesh:            # a prepared state directory, free ports, no HTTP door
        with mesh_up(mesh) as up:         # the real `mahavishnu up`, ready (/ready answered 200)
            ...

Progress goes to stderr (`log`); a benchmark's result is its last line on stdout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.config import Settings, load_config
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare


class BenchError(Exception):
    pass


def percentile(values: list[float], q: float) -> float:
    """The q-th quantile of `values` by nearest rank (pure); 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_mb(pid: int) -> float:
    """VmRSS of process `pid` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` so far (its own, not its children's), in clock ticks (10 ms): for seconds of work."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def on_cpu_seconds(pid: int) -> float:
    """The time the threads of `pid` alive now have spent on a CPU, to the nanosecond (/proc/PID/task/*/schedstat).

    For idle processes, whose few milliseconds a minute utime and stime would count in
    whole 10 ms ticks, given to whichever process runs when the tick comes. Threads that
    ended are not counted: measure across a window in which none end.
    """
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread ending as we look
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


@contextmanager
def running(
    command: list[str], env: dict[str, str], log_path: Path, **popen: object
) -> Iterator[subprocess.Popen[str]]:
    """A child process, stopped with SIGTERM (then SIGKILL) when the block ends."""
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, env=env, stderr=log_file, text=True, **popen)  # type: ignore[call-overload]
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_ready(url: str, up: subprocess.Popen[str], up_log: Path, timeout: float = 180.0) -> None:
    """Until up's /ready answers 200 (connected, read models caught up); BenchError with up's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise BenchError(f"mahavishnu up exited with {up.returncode}:\n{up_log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # poll interval while up starts, bounded by the deadline
    raise BenchError(f"mahavishnu up was not ready within {timeout:g} s:\n{up_log.read_text()[-3000:]}")


def environment(root: Path, metrics_port: int) -> dict[str, str]:
    """The environment of `up` and its helpers: a state directory of our own, free ports, no HTTP door."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAHAVISHNU_")}
    return env | {
        "MAHAVISHNU_HOME": str(root / "home"),
        "MAHAVISHNU_SERVER__PORT": str(free_port()),
        "MAHAVISHNU_SERVER__MONITOR_PORT": "0",
        "MAHAVISHNU_METRICS__PORT": str(metrics_port),  # /ready: connected and the read models caught up
        "MAHAVISHNU_HTTP__PORT": "0",
        "MAHAVISHNU_LOGGING__LEVEL": "warning",
    }


@dataclass(frozen=True)
class BenchMesh:
    """A mesh's state directory under `root` (home), its environment and settings, and where /ready answers."""

    root: Path
    home: Home
    env: dict[str, str]
    settings: Settings
    ready_url: str


@contextmanager
def bench_mesh(*, prepared: bool = True) -> Iterator[BenchMesh]:
    """A temporary state directory with free ports, prepared (CA, server configuration) unless told not to."""
    stop_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="mahavishnu-bench-") as tmp:
        root = Path(tmp)
        metrics_port = free_port()
        env = environment(root, metrics_port)
        settings = load_config(None, env=env)
        home = Home(root / "home")
        if prepared:
            prepare(home, settings)
        yield BenchMesh(root, home, env, settings, f"http://127.0.0.1:{metrics_port}/ready")


def stop_on_sigterm() -> None:
    """A bench stopped by SIGTERM (`kill`, `timeout`) unwinds as after ^C: its `up`, servers and agents are
    stopped and its folder removed. By default SIGTERM ends Python at once, leaving them all running."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


@contextmanager
def mesh_up(mesh: BenchMesh, command: list[str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """`mahavishnu up` (or `command up`) in `mesh`, once ready; stopped when the block ends. Its log: root/up.log."""
    up_log = mesh.root / "up.log"
    argv = [*(command or [sys.executable, "-m", "mahavishnu.cli"]), "up"]
    with running(argv, mesh.env, up_log, stdout=subprocess.DEVNULL) as up:
        wait_ready(mesh.ready_url, up, up_log)
        yield up
