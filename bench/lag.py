"""Live lag under load: how far behind the streams the read models of a running mesh fall while events pour in.

    python bench/lag.py [--rate R] [--seconds S]

Prepares a state directory, adds an operator with the viewer role, then runs the real
`mahavishnu up` (nats-server, read models, query service, audit trail). While it runs,
this process appends R events a second for S seconds over the control identity's
connection, a fleet's mix across every stream a read model follows (core.events,
projections.catalog): telemetry and heartbeats of 200 devices, commands issued and the
devices' reports of them, audit entries (through this process's audit trail, which links
them into the chain `up` writes its own records to, as every control process does).
Appends go in bulk batches, one per 100 ms tick, on an absolute schedule: a late tick is
made up by the next one, never dropped, and the rate reported is what the server
acknowledged over the time it took.

Meanwhile it asks `mesh.q.projections.status` as the operator every 250 ms (or as soon
as the previous answer came, if that took longer), exactly as a dashboard would, and
keeps each read model's lag_seconds: the age of its first event not applied yet, 0 when
caught up. p99_s is the worst read model's 99th percentile over the run, max_s the worst
sample of any. Progress goes to stderr; the last line on stdout is the result:
    lag rate=R p99_s=L max_s=M
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from nats.aio.client import Client

from bench.harness import BenchError, bench_mesh, log, mesh_up, percentile
from core import subjects
from core.config import Settings
from core.events import (
    AuditRecorded,
    CommandAccepted,
    CommandIssued,
    CommandSucceeded,
    DeviceHeartbeat,
    Event,
    TelemetryReported,
)
from core.logs import configure_logging
from core.store import EventStore, Identity, connect
from mahavishnu.control import operators
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.server import NatsServer
from mahavishnu.runtime.streams import streams_of

STATUS = "mesh.q.projections.status"
VIEWER = "bench-viewer"
DEVICES = 200
TICK_S = 0.1
SAMPLE_S = 0.25
# Of every 20 events: 11 telemetry, 3 heartbeats, 2 commands issued with their acceptance
# and success reported, 2 audit entries.
KINDS = ("telemetry",) * 11 + ("heartbeat",) * 3 + ("issued", "accepted", "succeeded") + ("audit",) * 2
KINDS = KINDS + ("telemetry",) * (20 - len(KINDS))


class Fleet:
    """The events of a busy fleet, in order (pure but for the clock each event reads when made)."""

    def __init__(self, devices: int = DEVICES) -> None:
        self.names = [f"dev-{k:04d}" for k in range(devices)]
        self.made = 0

    def next(self, n: int) -> list[Event]:
        events = [self._one(self.made + i) for i in range(n)]
        self.made += n
        return events

    def _one(self, i: int) -> Event:
        kind, device = KINDS[i % len(KINDS)], self.names[i % len(self.names)]
        cycle = i // len(KINDS)
        command, commanded = f"c-{cycle}", self.names[cycle % len(self.names)]  # one device per command
        if kind == "telemetry":
            return TelemetryReported(device_id=device, metrics={f"m{k}": i + k / 8 for k in range(6)}, actor=device)
        if kind == "heartbeat":
            return DeviceHeartbeat(device_id=device, uptime_s=float(i), outbox=i % 3, actor=device)
        if kind == "issued":
            return CommandIssued(command_id=command, device_id=commanded, name="ping", args={"n": i}, actor="ops-ann")
        if kind == "accepted":
            return CommandAccepted(command_id=command, device_id=commanded, actor=commanded)
        if kind == "succeeded":
            return CommandSucceeded(command_id=command, device_id=commanded, result={"pong": i}, actor=commanded)
        return AuditRecorded(  # chained by the audit trail that appends it
            actor="ops-ann", category="command", action="command.send", target=commanded, details={"id": command}
        )


def tick_sizes(rate: float, seconds: float, tick_s: float = TICK_S) -> Iterator[tuple[float, int]]:
    """(when, how many) per tick: at `when` seconds from the start, the events due by then not sent yet (pure)."""
    total, sent, k = round(rate * seconds), 0, 0
    while sent < total:
        when = k * tick_s
        due = min(total, round(rate * (when + tick_s)))
        if due > sent:
            yield when, due - sent
            sent = due
        k += 1


async def recorded(store: EventStore, entry: AuditRecorded) -> None:
    """An audit entry goes through the process's trail, as every audit record does: it links the chain."""
    await store.audit.record(
        actor=entry.actor, category=entry.category, action=entry.action, target=entry.target, details=entry.details
    )


async def append_paced(store: EventStore, rate: float, seconds: float, counted: list[int]) -> float:
    """Append on schedule; `counted[0]` follows the events acknowledged.

    Returns the seconds it took: the whole schedule, or longer when the appends fell behind.
    """
    fleet = Fleet()
    started = time.perf_counter()
    for when, n in tick_sizes(rate, seconds):
        wait = started + when - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)  # pacing the load, not synchronising anything
        events = fleet.next(n)
        entries = [e for e in events if isinstance(e, AuditRecorded)]
        others = [e for e in events if not isinstance(e, AuditRecorded)]
        report, *_ = await asyncio.gather(store.append_many(others), *(recorded(store, e) for e in entries))
        if report.acknowledged != len(others):
            raise BenchError(f"the server acknowledged {report.acknowledged} of {len(others)} events")
        counted[0] += n
    return max(seconds, time.perf_counter() - started)  # the last tick is due at `seconds` - TICK_S


async def sample(nc: Client, stop: asyncio.Event, lags: dict[str, list[float]], waits: list[float]) -> None:
    """Ask for the status every SAMPLE_S until `stop`; each read model's lag_seconds goes to `lags`."""
    while not stop.is_set():
        asked = time.perf_counter()
        reply = await nc.request(STATUS, b"{}", timeout=30)
        if reply.headers and "Nats-Service-Error-Code" in reply.headers:
            raise BenchError(f"{STATUS} answered {reply.headers}")
        waits.append(time.perf_counter() - asked)
        for model in msgspec.json.decode(reply.data)["read_models"]:
            if model["built"]:
                lags.setdefault(model["name"], []).append(float(model["lag_seconds"]))
        rest = SAMPLE_S - (time.perf_counter() - asked)
        if rest > 0:
            await asyncio.sleep(rest)  # the sampling interval


async def progress(counted: list[int], lags: dict[str, list[float]], stop: asyncio.Event, total: int) -> None:
    while not stop.is_set():
        await asyncio.sleep(5)  # a progress line every 5 s
        latest = ", ".join(f"{name} {values[-1]:.2f}s" for name, values in sorted(lags.items()) if values)
        log(f"appended {counted[0]:,}/{total:,}; lag now: {latest}")


async def load(control: Identity, viewer: Identity, settings: Settings, rate: float, seconds: float) -> str:
    store_nc = await connect(control, name="bench-appender", reconnect=False)
    nc = await connect(viewer, name="bench-sampler", reconnect=False, inbox_prefix=subjects.inbox_prefix(VIEWER))
    lags: dict[str, list[float]] = {}
    waits: list[float] = []
    counted = [0]
    stop = asyncio.Event()
    try:
        store = EventStore(store_nc, streams_of(settings))
        sampler = asyncio.create_task(sample(nc, stop, lags, waits))
        shower = asyncio.create_task(progress(counted, lags, stop, round(rate * seconds)))
        try:
            took = await append_paced(store, rate, seconds, counted)
        finally:
            stop.set()
            shower.cancel()
        await sampler
    finally:
        await nc.close()
        await store_nc.close()
    for name, values in sorted(lags.items()):
        log(
            f"{name}: {len(values)} samples, lag p50 {statistics.median(values):.3f} s,"
            f" p99 {percentile(values, 0.99):.3f} s, max {max(values):.3f} s"
        )
    log(f"status answered in p50 {statistics.median(waits) * 1000:.0f} ms, max {max(waits) * 1000:.0f} ms")
    p99 = max(percentile(values, 0.99) for values in lags.values())
    worst = max(max(values) for values in lags.values())
    return f"lag rate={counted[0] / took:.0f} p99_s={p99:.2f} max_s={worst:.2f}"


async def add_viewer(home: Home, settings: Settings, folder: Path) -> Identity:
    """An operator with the viewer role, added through a server of our own before `up` starts."""
    server = NatsServer(home.server_conf, name="bench-seed")
    server.start()
    try:
        issued = operators.add(home, settings, VIEWER, "viewer", out_dir=folder / VIEWER)
    finally:
        server.stop()
    assert issued.key_path is not None
    return Identity(home.control_identity(settings).url, issued.ca_path, issued.cert_path, issued.key_path)


async def main(rate: float, seconds: float) -> str:
    with bench_mesh() as mesh:
        viewer = await add_viewer(mesh.home, mesh.settings, mesh.root)
        with mesh_up(mesh) as up:
            log(f"mesh up (pid {up.pid}); appending {rate:g} events/s for {seconds:g} s")
            result = await load(mesh.home.control_identity(mesh.settings), viewer, mesh.settings, rate, seconds)
            if up.poll() is not None:
                up_log = (mesh.root / "up.log").read_text()[-3000:]
                raise BenchError(f"mahavishnu up exited with {up.returncode}:\n{up_log}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=5000.0, help="events appended per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to append")
    options = parser.parse_args()
    configure_logging(level="warning", fmt="text")
    import uvloop

    print(uvloop.run(main(options.rate, options.seconds)))
