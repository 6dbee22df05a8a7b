"""The command path, timed end to end: issued by the control plane, run by a connected agent, result back.

    python bench/commands.py [--devices N] [--rate R] [--seconds S]

Prepares a state directory, runs the real `mahavishnu up`, then `mahavishnu agent run
--simulate N` (N agents in one process, each with its own certificate, NATS identity and
durable command consumer) and waits until every agent has reported in. Then:
  - baseline: a raw nats-py request/reply round trip between two connections of this
    process through the same server (mTLS), R a second for S/3 seconds;
  - commands: R `ping` commands a second for S seconds across the N devices, each sent as
    `mahavishnu cmd send` does (control.commands.send: the CommandIssued append and its
    audit record) and timed from the send to the arrival of its command.succeeded event
    on the device's event subject.
A command whose result has not arrived within 30 s of the last send is lost; a result seen
twice for one command is counted as run twice. Progress goes to stderr; the last line on
stdout is the result (ratio = p99 / baseline_rtt_p99):
    commands devices=N sent=S p50_ms=A p99_ms=B baseline_rtt_p99_ms=R lost=L twice=T ratio=X
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import contextlib

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.cli import command
from bench.harness import BenchError, bench_mesh, log, mesh_up, percentile, running
from core.config import Settings
from core.events import CommandSucceeded, EventDecodeError, decode
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.control import commands
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.streams import streams_of

RESULTS_WAIT_S = 30.0


async def paced(rate: float, seconds: float, send: object) -> int:
    """Call `send(i)` (a coroutine function) `rate` times a second for `seconds`, each in a task of its own."""
    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    i = 0
    while (due := started + i / rate) < started + seconds:
        await asyncio.sleep(max(0.0, due - time.perf_counter()))  # pacing, not synchronisation
        tasks.append(asyncio.create_task(send(i)))  # type: ignore[operator]
        i += 1
    await asyncio.gather(*tasks)
    return i


async def baseline(home: Home, settings: Settings, rate: float, seconds: float) -> list[float]:
    """Round trips of a raw nats-py request/reply between two connections of this process, in seconds."""
    identity = home.control_identity(settings)
    responder = await connect(identity, name="bench-responder", reconnect=False)
    asker = await connect(identity, name="bench-asker", reconnect=False)

    async def answer(msg: Msg) -> None:
        await msg.respond(msg.data)

    await responder.subscribe("bench.rtt", cb=answer)
    await responder.flush()
    trips: list[float] = []

    async def ask(i: int) -> None:
        for _ in range(5):  # the server may be reloading the devices' users just enrolled: ask again
            sent = time.perf_counter()
            try:
                await asker.request("bench.rtt", b"ping", timeout=10)
            except nats.errors.NoRespondersError:
                continue
            trips.append(time.perf_counter() - sent)
            return
        raise BenchError("bench.rtt had no responder five times over")

    try:
        await paced(rate, seconds, ask)
    finally:
        await asker.close()
        await responder.close()
    return trips


async def agents_reported(
    nc: Client, devices: list[str], simulators: list[subprocess.Popen[str]], timeout: float
) -> None:
    """Until every device has sent an event (its agent is connected, its command consumer bound); BenchError else."""
    heard: set[str] = set()
    everyone = asyncio.Event()

    async def seen(msg: Msg) -> None:
        heard.add(msg.subject.split(".")[3])
        if heard.issuperset(devices):
            everyone.set()

    sub = await nc.subscribe("mesh.evt.device.*.>", cb=seen)
    try:
        deadline = time.monotonic() + timeout
        while not everyone.is_set():
            for simulator in simulators:
                if simulator.poll() is not None:
                    raise BenchError(f"an agents' process exited with {simulator.returncode}")
            if time.monotonic() > deadline:
                raise BenchError(f"only {len(heard)} of {len(devices)} agents reported within {timeout:g} s")
            log(f"agents reported: {len(heard)}/{len(devices)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(everyone.wait(), 2)
    finally:
        await sub.unsubscribe()


async def measure(home: Home, settings: Settings, devices: list[str], rate: float, seconds: float) -> str:
    trips = await baseline(home, settings, rate, max(1.0, seconds / 3))
    log(f"baseline: {len(trips)} round trips, p99 {percentile(trips, 0.99) * 1000:.2f} ms")
    nc = await connect(home.control_identity(settings), name="bench-commands", reconnect=False)
    store = EventStore(nc, streams_of(settings))
    sent_at: dict[str, float] = {}
    arrived: dict[str, float] = {}  # every result seen, also one that arrives before its send returned
    results: Counter[str] = Counter()
    all_back = asyncio.Event()
    sending = True

    def complete() -> bool:
        return not sending and all(command_id in arrived for command_id in sent_at)

    async def result(msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except EventDecodeError:
            return
        if isinstance(event, CommandSucceeded):
            results[event.command_id] += 1
            arrived.setdefault(event.command_id, time.perf_counter())
            if complete():
                all_back.set()

    sub = await nc.subscribe("mesh.evt.device.*.command", cb=result)

    async def send(i: int) -> None:
        started = time.perf_counter()
        issued = await commands.send(
            store, devices[i % len(devices)], "ping", {}, ttl_s=60, timeout_s=10, actor="bench"
        )
        sent_at[issued.command_id] = started

    try:
        sent = await paced(rate, seconds, send)
        sending = False
        log(f"sent {sent} commands; waiting up to {RESULTS_WAIT_S:g} s for the last results")
        if not complete():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_back.wait(), RESULTS_WAIT_S)
    finally:
        await sub.unsubscribe()
        await nc.close()
    latencies = {cid: arrived[cid] - started for cid, started in sent_at.items() if cid in arrived}
    times = list(latencies.values())
    if not times:
        raise BenchError("no command came back")
    p50, p99 = percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000
    base = percentile(trips, 0.99) * 1000
    lost = len(sent_at) - len(latencies)
    twice = sum(1 for cid in sent_at if results[cid] > 1)
    log(f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, mean {statistics.mean(times) * 1000:.1f} ms")
    return (
        f"commands devices={len(devices)} sent={len(sent_at)} p50_ms={p50:.1f} p99_ms={p99:.1f} "
        f"baseline_rtt_p99_ms={base:.2f} lost={lost} twice={twice} ratio={p99 / base:.1f}"
    )


async def main(count: int, rate: float, seconds: float) -> str:
    with bench_mesh(prepared=False) as mesh:  # `up` prepares it, as a new user's first `up` does
        home, settings = mesh.home, mesh.settings
        devices = [f"sim-{i}" for i in range(count)]
        log("starting mahavishnu up")
        with mesh_up(mesh, command()):
            watcher = await connect(home.control_identity(settings), name="bench-watch", reconnect=False)
            try:
                simulate = [*command(), "agent", "run", "--simulate", str(count)]
                with running(simulate, mesh.env, mesh.root / "agents.log", stdout=subprocess.DEVNULL) as simulator:
                    await agents_reported(watcher, devices, [simulator], timeout=60 + count)
                    log(f"{count} agents connected; {rate:g} commands/s for {seconds:g} s")
                    return await measure(home, settings, devices, rate, seconds)
            finally:
                await watcher.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100, help="simulated agents (one process)")
    parser.add_argument("--rate", type=float, default=200.0, help="commands a second")
    parser.add_argument("--seconds", type=float, default=30.0)
    options = parser.parse_args()
    configure_logging(level="warning", fmt="text")
    import uvloop

    print(uvloop.run(main(options.devices, options.rate, options.seconds)))
