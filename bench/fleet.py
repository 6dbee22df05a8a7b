"""A fleet on one `up`: enrol it, connect its agents, and time commands across it.

    python bench/fleet.py [--devices 10000] [--agents 2000] [--processes 4]
                          [--targets 1000] [--rate 200] [--seconds 30]

Prepares a state directory and runs the real `mahavishnu up`, then:
  1. enrols --devices devices through the claim path, timed (enrol_per_s): a claim per 500
     devices, then each device provisions itself as `agent provision` does (its own key and
     CSR, the claim's bootstrap certificate, up's provisioning service), 32 at a time,
     spread over --processes processes (a fleet's devices boot on hardware of their own);
  2. connects --agents of them, the agents spread over --processes processes (each runs
     its share of real agents, each agent with its own certificate, NATS identity, command
     consumer and SQLite ledger), timed until every agent has reported (connect_s);
  3. baseline: a raw nats-py request/reply round trip through the same server;
  4. sends --rate `ping` commands a second for --seconds across the first --targets
     connected devices, as `mahavishnu cmd send` does, each timed from the send to its
     command.succeeded event (bench/commands.py's measurement).
A command whose result has not arrived 30 s after the last send is lost. Progress goes to
stderr; the last line on stdout is the result:
    fleet enrolled=N enrol_per_s=E connected=C connect_s=S p50_ms=A p99_ms=B
          baseline_rtt_p99_ms=R lost=L server_rss_mb=M
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cli import command
from bench.commands import agents_reported, measure
from bench.enrol import server_rss_mb
from bench.harness import BenchError, BenchMesh, bench_mesh, log, mesh_up, running
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.cli.agent_provision import provision
from mahavishnu.identity import claiming
from mahavishnu.identity.claimfile import device_id

T = TypeVar("T")
CLAIM_SIZE = 500  # devices per claim (a batch)
IN_FLIGHT = 32  # devices provisioning at once (up's service queues 64 at most, then says busy)
# One process of agents: each argument an agent.toml (the agent's own code, as `agent run --config` runs it).
# One process of provisioning devices: a file of its share as JSON [[claim file, device id], ...], the devices'
# folder, how many at a time.
PROVISION = (
    f"import sys, json, asyncio; sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r}); "
    "from pathlib import Path; from bench.fleet import provision_share; "
    "asyncio.run(provision_share(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]), int(sys.argv[3])))"
)
RUN_AGENTS = (
    "import sys, asyncio; from mahavishnu.cli.agent_runner import run_agents; "
    "sys.exit(asyncio.run(run_agents(sys.argv[1:])))"
)


async def enrol_fleet(mesh: BenchMesh, count: int, processes: int = 4) -> tuple[list[str], float]:
    """Provision `count` devices by claim, as a batch's devices do; (device ids, seconds taken).

    The operator makes one claim per CLAIM_SIZE devices (`fleet claim create`); the devices
    then run `agent provision`'s code in `processes` processes, IN_FLIGHT at a time in all,
    each making its key and CSR, connecting with its claim's bootstrap certificate and
    asking up's provisioning service.
    Consecutive devices use different claims, as batches booting side by side would.
    """
    home, settings = mesh.home, mesh.settings
    nc = await connect(home.control_identity(settings), name="bench-fleet-claims", reconnect=False)
    try:
        store = EventStore(nc)
        claims = []
        for n in range(0, count, CLAIM_SIZE):
            size = min(CLAIM_SIZE, count - n)
            made = await claiming.create(
                home, settings, store, prefix=f"fleet{n // CLAIM_SIZE:02d}-", count=size, ttl=timedelta(hours=2)
            )
            claims.append((made.path, [device_id(made.claim.prefix, i, size) for i in range(size)]))
    finally:
        await nc.close()
    work = [(str(path), ids[i]) for i in range(CLAIM_SIZE) for path, ids in claims if i < len(ids)]
    ids = [device for _, device in work]
    devices = home.root / "devices"
    started = time.perf_counter()
    with ExitStack() as stack:
        # The devices' side (keys, CSRs, TLS handshakes, files) in several processes, as a fleet
        # booting side by side runs it on its own hardware: one process alone could not keep
        # up's service busy (it was the bench, not up, that set the pace).
        children = []
        for n, share in enumerate(shares(work, processes)):
            work_file = mesh.root / f"provision-{n}.json"  # a share of 10,000 is too long for an argument
            work_file.write_text(json.dumps(share))
            argv = [sys.executable, "-c", PROVISION, str(work_file), str(devices), str(IN_FLIGHT // processes or 1)]
            log_path = mesh.root / f"provision-{n}.log"
            children.append(stack.enter_context(running(argv, mesh.env, log_path, stdout=subprocess.DEVNULL)))
        reported = 0
        waiting = set(ids)  # only these are looked for: checking all 10,000 every time cost 2 ms of CPU an enrolment
        while any(child.poll() is None for child in children):
            await asyncio.sleep(0.5)  # progress, and the children's end: polled
            waiting = {device for device in waiting if not (devices / device / "agent.toml").exists()}
            done = count - len(waiting)
            if done // 1000 > reported // 1000:
                log(f"enrolled {done:,}/{count:,} ({done / (time.perf_counter() - started):.0f}/s)")
                reported = done
        failed = [n for n, child in enumerate(children) if child.returncode != 0]
        if failed:
            tail = (mesh.root / f"provision-{failed[0]}.log").read_text()[-2000:]
            raise BenchError(f"a provisioning process failed:\n{tail}")
    took = time.perf_counter() - started
    log(f"enrolled {count:,}/{count:,} ({count / took:.0f}/s)")
    return ids, took


async def provision_share(work: list[tuple[str, str]], devices: Path, in_flight: int) -> None:
    """What one provisioning process does: its share of the devices, `in_flight` at a time."""
    slots = asyncio.Semaphore(in_flight)

    async def one(claim_path: str, device: str) -> None:
        async with slots:
            await provision(Path(claim_path), device, devices / device)

    await asyncio.gather(*(one(path, device) for path, device in work))


def start_agents(stack: ExitStack, mesh: BenchMesh, devices: list[str], processes: int) -> list[subprocess.Popen[str]]:
    """The devices' agents, spread over `processes` processes (each its agents.log), stopped when `stack` closes."""
    agents = []
    for n, share in enumerate(shares(devices, processes)):
        configs = [str(mesh.home.root / "devices" / device / "agent.toml") for device in share]
        argv = [sys.executable, "-c", RUN_AGENTS, *configs]
        log_path = mesh.root / f"agents-{n}.log"
        agents.append(stack.enter_context(running(argv, mesh.env, log_path, stdout=subprocess.DEVNULL)))
    return agents


def shares(items: list[T], parts: int) -> list[list[T]]:
    """`items` dealt into `parts` nearly equal shares (pure)."""
    return [items[i::parts] for i in range(parts) if items[i::parts]]


async def main(args: argparse.Namespace) -> str:
    with bench_mesh(prepared=False) as mesh:
        home, settings = mesh.home, mesh.settings
        log("starting mahavishnu up")
        with mesh_up(mesh, command()):
            ids, enrol_s = await enrol_fleet(mesh, args.devices, args.processes)
            connected = ids[: args.agents]
            watcher = await connect(home.control_identity(settings), name="bench-fleet-watch", reconnect=False)
            try:
                with ExitStack() as stack:
                    started = time.perf_counter()
                    agents = start_agents(stack, mesh, connected, args.processes)
                    await agents_reported(watcher, connected, agents, timeout=120 + len(connected) / 10)
                    connect_s = time.perf_counter() - started
                    log(f"{len(connected)} agents connected in {connect_s:.1f} s")
                    targets = connected[: args.targets]
                    line = await measure(home, settings, targets, args.rate, args.seconds)
                    rss = server_rss_mb(home.root)
            finally:
                await watcher.close()
    found = re.search(r"p50_ms=(\S+) p99_ms=(\S+) baseline_rtt_p99_ms=(\S+) lost=(\d+)", line)
    if found is None:
        raise BenchError(f"unexpected command measurement: {line}")
    p50, p99, base, lost = found.groups()
    return (
        f"fleet enrolled={len(ids)} enrol_per_s={len(ids) / enrol_s:.0f} connected={len(connected)} "
        f"connect_s={connect_s:.1f} p50_ms={p50} p99_ms={p99} baseline_rtt_p99_ms={base} lost={lost} "
        f"server_rss_mb={rss}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000, help="devices to enrol")
    parser.add_argument("--agents", type=int, default=2_000, help="of them, how many run an agent")
    parser.add_argument("--processes", type=int, default=4, help="processes the agents are spread over")
    parser.add_argument("--targets", type=int, default=1_000, help="of the agents, how many get commands")
    parser.add_argument("--rate", type=float, default=200.0, help="commands a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long commands are sent")
    arguments = parser.parse_args()
    if not 1 <= arguments.targets <= arguments.agents <= arguments.devices:
        raise SystemExit("need 1 <= --targets <= --agents <= --devices")
    configure_logging(level="warning")
    try:
        print(asyncio.run(main(arguments)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
