"""What one idle agent costs a device: memory, time to connect, CPU while idle.

    python bench/agent_footprint.py [--idle-seconds S] [--starts N]

1. Builds a device's venv the README's way ("On a device"): a fresh venv, then
   `pip install --require-hashes -r requirements/edge.txt` (nats-py and msgspec, locked)
   and `pip install --no-deps .` (this checkout). No control-plane package is in it.
2. Prepares a mesh in a temporary state directory (mahavishnu.runtime.provisioning.prepare)
   and starts its real nats-server (mTLS, encrypted JetStream); enrols two devices.
3. Starts, N times each and alternating, so the machine's noise hits both alike:
   - the agent, `DEVICE_VENV/bin/mahavishnu agent run --config agent.toml`;
   - the baseline, the same venv's `python -c "import asyncio, nats; connect"`: a bare
     nats-py client connecting to the same server with the same device certificate.
   start_ms is the time from spawning the process to its saying it is connected: the
   agent's own log line `"msg": "connected"` (logged once nats-py's connect has returned:
   TLS handshake, CONNECT and the server's PONG), the baseline's `connected` line, written
   at the same point. Each figure is the median of N starts; every start but the last is
   stopped with SIGTERM once connected.
   first_event_ms is, for the last start of the agent, spawn to the arrival of its first
   event (the reported state it sends at every start) on the bench's own subscription to
   the device's events: connected, its command consumer bound, its outbox sending.
4. Starts the agent once more the way a control host runs it: this Python's `mahavishnu`
   (the full install, the second device), to see what the control plane's packages cost.
5. Leaves the three running side by side for S seconds, connected and idle (the agents'
   heartbeats and telemetry run at their default intervals, 30 s and 60 s), then reads
   each process's VmRSS (/proc/PID/status) and the CPU it used in the window (its threads'
   time on a CPU, /proc/PID/task/*/schedstat, to the nanosecond: utime and stime count
   10 ms ticks, too coarse for an idle process; idle_cpu_pct is a percentage of one core).

Progress goes to stderr; the last line on stdout is the result:
    agent rss_mb=R start_ms=S idle_cpu_pct=C first_event_ms=E baseline_rss_mb=BR
        baseline_start_ms=BS baseline_idle_cpu_pct=BC control_host_rss_mb=HR control_host_start_ms=HS
(on one line). Targets: rss_mb <= 30, start_ms <= 300, idle_cpu_pct <= 0.2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.harness import BenchError, log, on_cpu_seconds, rss_mb
from core import subjects
from core.config import Settings, load_config
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.control import devices
from mahavishnu.identity.thread import IdentityThread
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer

ROOT = Path(__file__).resolve().parent.parent
DEVICE = "bench-agent"  # the device install's agent (and the baseline's identity)
CONTROL_HOST_DEVICE = "bench-agent-full"  # the same agent from the full install
CONNECT_TIMEOUT_S = 60.0
CONNECTED = '"msg": "connected"'  # the agent's log line (JSON) once it is on the mesh

# The least a client of the mesh pays: the same venv, nats-py alone, the same TLS files.
BASELINE = """
import asyncio, ssl, sys
import nats

async def main(url, ca, cert, key, inbox):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    nc = await nats.connect(url, tls=context, name="baseline", inbox_prefix=inbox, allow_reconnect=False)
    print("connected", file=sys.stderr, flush=True)
    await asyncio.Event().wait()  # connected and idle until SIGTERM

asyncio.run(main(*sys.argv[1:]))
"""


def run(argv: Sequence[str | Path], what: str) -> None:
    ran = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600)
    if ran.returncode != 0:
        raise BenchError(f"{what} failed ({ran.returncode}): {ran.stderr.strip()[-3000:]}")


def device_venv(folder: Path) -> Path:
    """The README's device install in `folder`; returns its Python."""
    run([sys.executable, "-m", "venv", folder], "making the device venv")
    python = folder / "bin" / "python"
    pip: list[str | Path] = [python, "-m", "pip", "install", "--quiet"]
    run([*pip, "--require-hashes", "-r", ROOT / "requirements" / "edge.txt"], "pip install -r requirements/edge.txt")
    run([*pip, "--no-deps", ROOT], "pip install --no-deps .")
    listed = subprocess.run([python, "-m", "pip", "list"], capture_output=True, text=True, check=True).stdout
    installed = sorted(line.split()[0] for line in listed.splitlines()[2:] if line.split())
    log(f"device venv {folder}: {', '.join(installed)}")
    return python


# --- /proc -------------------------------------------------------------------------


# --- processes ---------------------------------------------------------------------


@dataclass
class Started:
    """A child process that said it is connected: after `start_ms`; its last stderr lines kept."""

    name: str
    process: asyncio.subprocess.Process
    spawned: float  # time.perf_counter() just before the spawn
    start_ms: float = 0.0
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    _drain: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._drain is not None:
            await self._drain
        if self.process.returncode not in (0, -signal.SIGTERM):
            raise BenchError(f"{self.name} exited {self.process.returncode}:\n" + "\n".join(self.lines))


async def start(name: str, argv: Sequence[str | Path], env: dict[str, str], marker: str) -> Started:
    """Spawn `argv` and wait for the stderr line containing `marker`; BenchError if it exits or is late."""
    spawned = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *(str(a) for a in argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    child = Started(name, process, spawned)
    assert process.stderr is not None
    stderr = process.stderr
    deadline = spawned + CONNECT_TIMEOUT_S
    while True:
        try:
            raw = await asyncio.wait_for(stderr.readline(), max(0.0, deadline - time.perf_counter()))
        except TimeoutError:
            await child.stop()
            raise BenchError(
                f"{name} did not connect within {CONNECT_TIMEOUT_S:g} s:\n" + "\n".join(child.lines)
            ) from None
        if not raw:
            await child.stop()
            raise BenchError(f"{name} exited before connecting:\n" + "\n".join(child.lines))
        line = raw.decode(errors="replace").rstrip()
        child.lines.append(line)
        if marker in line:
            child.start_ms = (time.perf_counter() - spawned) * 1000
            break

    async def drain() -> None:  # keep reading, so a chatty child never blocks on a full pipe
        async for more in stderr:
            child.lines.append(more.decode(errors="replace").rstrip())

    child._drain = asyncio.create_task(drain())
    return child


# --- the mesh ----------------------------------------------------------------------


@dataclass
class Mesh:
    home: Home
    settings: Settings
    server: NatsServer
    url: str  # the server's client URL (the port it picked)
    nc: Client
    store: EventStore


@contextlib.asynccontextmanager
async def mesh(root: Path) -> AsyncIterator[Mesh]:
    settings = load_config(None, env={})
    home = Home(root)
    prepare(home, settings, port=-1, monitor_port=0)
    server = NatsServer(home.server_conf, name="bench")
    endpoints = server.start()
    try:
        control = home.control_identity(settings, endpoints.port)
        identities = IdentityThread(home, control, home.system_identity(settings, endpoints.port))
        identities.start()  # admits the devices, as `up` does
        nc = await connect(control, name="bench", reconnect=False)
        try:
            store = EventStore(nc)
            await store.ensure_streams()
            yield Mesh(home, settings, server, control.url, nc, store)
        finally:
            await nc.close()
            identities.stop()
    finally:
        server.stop()


async def enrol(mesh: Mesh, device: str, folder: Path) -> Path:
    enrolment = await devices.enroll(
        mesh.home, mesh.settings, mesh.store, device, out_dir=folder / device, url=mesh.url
    )
    return enrolment.agent_config


# --- the measurement ---------------------------------------------------------------


@dataclass
class Figures:
    """One process's figures."""

    start_ms: float
    rss_mb: float = 0.0
    idle_cpu_pct: float = 0.0


class Arrivals:
    """When each event of a device reached the mesh (time.perf_counter()), from a core subscription."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._more = asyncio.Event()

    async def watch(self, nc: Client, device: str) -> None:
        async def seen(_: Msg) -> None:
            self.times.append(time.perf_counter())
            self._more.set()

        await nc.subscribe(subjects.device_events(device), cb=seen)
        await nc.flush()

    async def first_after(self, started: float, timeout: float) -> float:
        """The first arrival after `started`; TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not (later := [t for t in self.times if t > started]):
                self._more.clear()
                await self._more.wait()
        return later[0]


async def alternate_starts(
    starts: int, agent_argv: list[str | Path], baseline_argv: list[str | Path], env: dict[str, str]
) -> tuple[Started, float, Started, float]:
    """Start the baseline and the agent `starts` times each, alternating: the last of each, and the median times."""
    agent_ms: list[float] = []
    baseline_ms: list[float] = []
    for i in range(starts):
        last = i == starts - 1
        baseline = await start("baseline", baseline_argv, env, "connected")
        baseline_ms.append(baseline.start_ms)
        if not last:
            await baseline.stop()
        agent = await start("agent", agent_argv, env, CONNECTED)
        agent_ms.append(agent.start_ms)
        if not last:
            await agent.stop()
        log(f"start {i + 1}/{starts}: agent {agent_ms[-1]:.0f} ms, baseline {baseline_ms[-1]:.0f} ms")
    return agent, statistics.median(agent_ms), baseline, statistics.median(baseline_ms)


async def idle(children: Sequence[Started], seconds: float) -> list[tuple[float, float]]:
    """(VmRSS in MB, CPU in % of one core) of each child after `seconds` side by side, connected and idle."""
    log(f"all connected; idle for {seconds:g} s")
    before = [on_cpu_seconds(c.pid) for c in children]
    window = time.perf_counter()
    await asyncio.sleep(seconds)  # the measurement window itself, not a synchronisation
    window = time.perf_counter() - window
    figures = [
        (rss_mb(c.pid), (on_cpu_seconds(c.pid) - b) / window * 100) for c, b in zip(children, before, strict=True)
    ]
    for child, (rss, cpu) in zip(children, figures, strict=True):
        log(f"{child.name}: rss {rss:.1f} MB, idle cpu {cpu:.3f}% of a core over {window:.0f} s")
    return figures


async def main(idle_seconds: float, starts: int) -> str:
    with tempfile.TemporaryDirectory(prefix="mahavishnu-bench-") as tmp:
        root = Path(tmp)
        log("building the device venv (requirements/edge.txt, then --no-deps .)")
        python = device_venv(root / "device-venv")
        async with mesh(root / "home") as running:
            agent_toml = await enrol(running, DEVICE, root / "devices")
            control_toml = await enrol(running, CONTROL_HOST_DEVICE, root / "devices")
            folder = agent_toml.parent
            env = {k: v for k, v in os.environ.items() if not k.startswith(("MAHAVISHNU_", "PYTHON"))}
            env["MAHAVISHNU_LOGGING__LEVEL"] = "info"  # the agent's "connected" line is at info
            identity = [folder / "ca.pem", folder / "cert.pem", folder / "key.pem"]
            baseline_argv: list[str | Path] = [
                python,
                "-c",
                BASELINE,
                running.url,
                *identity,
                subjects.device_inbox_prefix(DEVICE),
            ]
            agent_argv: list[str | Path] = [python.with_name("mahavishnu"), "agent", "run", "--config", agent_toml]
            arrivals = Arrivals()
            await arrivals.watch(running.nc, DEVICE)

            agent, agent_ms, baseline, baseline_ms = await alternate_starts(starts, agent_argv, baseline_argv, env)
            children = [agent, baseline]
            try:
                try:
                    first_event = await arrivals.first_after(agent.spawned, CONNECT_TIMEOUT_S)
                except TimeoutError:
                    raise BenchError("the agent's first event never arrived:\n" + "\n".join(agent.lines)) from None
                first_event_ms = (first_event - agent.spawned) * 1000
                full_argv: list[str | Path] = [
                    Path(sys.executable).with_name("mahavishnu"),
                    "agent",
                    "run",
                    "--config",
                    control_toml,
                ]
                children.append(await start("agent (control host)", full_argv, env, CONNECTED))
                log(f"control host's agent: connected in {children[-1].start_ms:.0f} ms")
                (rss, cpu), (base_rss, base_cpu), (full_rss, _) = await idle(children, idle_seconds)
            finally:
                for child in children:
                    await child.stop()
    log(f"start_ms / baseline_start_ms = {agent_ms / baseline_ms:.2f}, rss_mb / baseline_rss_mb = {rss / base_rss:.2f}")
    return (
        f"agent rss_mb={rss:.1f} start_ms={agent_ms:.0f} idle_cpu_pct={cpu:.3f} first_event_ms={first_event_ms:.0f}"
        f" baseline_rss_mb={base_rss:.1f} baseline_start_ms={baseline_ms:.0f} baseline_idle_cpu_pct={base_cpu:.3f}"
        f" control_host_rss_mb={full_rss:.1f} control_host_start_ms={children[-1].start_ms:.0f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="how long the agents stay idle")
    parser.add_argument("--starts", type=int, default=5, help="starts of the agent and of the baseline (median)")
    options = parser.parse_args()
    configure_logging(level="warning", fmt="text")
    try:
        print(asyncio.run(main(options.idle_seconds, options.starts)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
