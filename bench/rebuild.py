"""Rebuild throughput: a full rebuild of the audit read model against a raw nats-py replay of the same stream.

    python bench/rebuild.py [--events N] [--rounds R]

Starts an embedded nats-server with the mesh's own configuration (mTLS, encrypted
JetStream) in a temporary state directory and appends N hash-chained audit events of
about 300 bytes (in chunks, so the generator holds little). Then it alternates R rounds of
  - baseline: a nats-py ordered push consumer replaying the AUDIT stream, each message
    counted and dropped;
  - ours: `ProjectionRunner.rebuild()` of the audit read model, a new SQLCipher file
    from sequence 1 (decode, chain check, insert, indexes), swapped in at the end.
The medians are compared, since one machine's noise hits both alike. The peak resident
sets of this process and of the bulk-load child are summed into rss_mb. Progress goes to
stderr; the last line on stdout is
    rebuild events=N rate=R baseline_replay=B ratio=X rss_mb=M
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nats.aio.client import Client

from core.audit import GENESIS, STREAM, audit_hash
from core.config import load_config
from core.events import AuditRecorded
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer
from projections.audit import Audit
from projections.database import ensure_key_file
from projections.runner import ProjectionRunner

CHUNK = 5_000


def audit_events(n: int) -> Iterator[list[AuditRecorded]]:
    """N chained audit entries, CHUNK at a time: who queried what, as a busy mesh records it."""
    previous = GENESIS
    chunk: list[AuditRecorded] = []
    for i in range(n):
        event = AuditRecorded(
            actor=f"operator:op-{i % 17}",
            category="query",
            action=("devices.list", "commands.get", "audit.search")[i % 3],
            target=f"dev-{i % 1000:04d}",
            outcome="ok",
            details={"role": "admin", "door": "nats", "request": i},
            prev_hash=previous,
        )
        previous = audit_hash(event)
        chunk.append(event)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def fill(store: EventStore, n: int) -> None:
    done = 0
    for chunk in audit_events(n):
        report = await store.append_many(chunk)
        assert report.acknowledged == len(chunk), report
        done += len(chunk)
        print(f"\rappending {done:,}/{n:,}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


async def baseline(nc: Client, n: int) -> float:
    js = nc.jetstream()
    done = asyncio.get_running_loop().create_future()
    count = 0

    async def counted(msg: object) -> None:
        nonlocal count
        count += 1
        if count == n and not done.done():
            done.set_result(None)

    started = time.perf_counter()
    sub = await js.subscribe("mesh.audit.>", stream=STREAM, ordered_consumer=True, cb=counted)
    await done
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return n / elapsed


async def ours(store: EventStore, folder: Path, key: str, n: int) -> float:
    runner = ProjectionRunner(Audit(), store, directory=folder, key=key)
    await runner.open()
    last_shown = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last_shown
        now = time.monotonic()
        if now - last_shown > 0.5 or done == total:
            last_shown = now
            print(f"\r  rebuild {done:,}/{total:,}", end="", file=sys.stderr, flush=True)

    started = time.perf_counter()
    applied = await runner.rebuild(progress)
    elapsed = time.perf_counter() - started
    print(file=sys.stderr)
    assert applied == n, applied
    rows = await runner._fetch("SELECT count(*), sum(chain_ok) FROM audit")
    assert rows == [(n, n)], rows  # every entry applied once, and the chain held
    await runner.close()
    return n / elapsed


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time so far: of this process with its waited children, or of `pid` (from /proc)."""
    if pid is not None:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


async def main(n: int, rounds: int) -> str:
    with tempfile.TemporaryDirectory(prefix="mahavishnu-bench-") as tmp:
        settings = load_config(None, env={})
        home = Home(Path(tmp))
        prepare(home, settings, port=-1, monitor_port=0)
        key = ensure_key_file(home.root).read_text().strip()
        server = NatsServer(home.server_conf, name="bench")
        endpoints = server.start()
        try:
            nc = await connect(home.control_identity(settings, endpoints.port), name="bench", reconnect=False)
            store = EventStore(nc)
            await store.ensure_streams()
            await fill(store, n)
            print(f"peak rss after filling: {peak_rss_mb(resource.RUSAGE_SELF):.0f} MB", file=sys.stderr)
            base_rates, our_rates = [], []
            assert server.process is not None
            server_pid = server.process.pid
            for r in range(rounds):
                cpu = cpu_seconds(), cpu_seconds(server_pid)
                base_rates.append(await baseline(nc, n))
                cpu_base = cpu_seconds() - cpu[0], cpu_seconds(server_pid) - cpu[1]
                cpu = cpu_seconds(), cpu_seconds(server_pid)
                our_rates.append(await ours(store, home.root / "bench-readmodels", key, n))
                cpu_ours = cpu_seconds() - cpu[0], cpu_seconds(server_pid) - cpu[1]
                print(
                    f"  cpu seconds (python, nats-server): baseline {cpu_base[0]:.1f}, {cpu_base[1]:.1f};"
                    f" rebuild {cpu_ours[0]:.1f}, {cpu_ours[1]:.1f}",
                    file=sys.stderr,
                )
                print(
                    f"round {r + 1}/{rounds}: baseline replay {base_rates[-1]:,.0f}/s, rebuild {our_rates[-1]:,.0f}/s"
                    f" (peak rss: ours {peak_rss_mb(resource.RUSAGE_SELF):.0f} MB,"
                    f" bulk loader {peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB)",
                    file=sys.stderr,
                )
            await nc.close()
            # The bulk loader is a child process that has exited by now, the server is not:
            # count the loader's peak with ours, since both are alive during a rebuild.
            rss_mb = peak_rss_mb(resource.RUSAGE_SELF) + peak_rss_mb(resource.RUSAGE_CHILDREN)
        finally:
            server.stop()
    rate, base = statistics.median(our_rates), statistics.median(base_rates)
    return f"rebuild events={n} rate={rate:.0f} baseline_replay={base:.0f} ratio={rate / base:.2f} rss_mb={rss_mb:.0f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    configure_logging(level="warning", fmt="text")
    import uvloop

    print(uvloop.run(main(options.events, options.rounds)))
