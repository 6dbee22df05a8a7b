"""Query throughput: `mesh.q.audit.search` through the real query service against a raw nats-py micro echo service.

    python bench/query.py [--seconds S] [--rounds R] [--entries N] [--concurrency C]

Prepares a state directory, seeds the AUDIT stream with N hash-chained entries (half of
them about one of 40 devices, so `{"device": "dev-a"}` answers a full page of 100), adds an
operator with the auditor role, then runs the real `mahavishnu up` (nats-server, read
models, query service, audit trail) and, in its own process, bench/echo_service.py: a
nats-py micro service whose one endpoint answers with the request, on mesh.q.bench.echo.

Both are called exactly the way people call the queries: over mTLS as the operator, from
the OPS account through its `mesh.q.>` service import, by C concurrent requesters on one
connection. Rounds alternate between the two, S/R seconds of each per round, after a
short warm-up of each; the medians of the rounds' rates are compared, since one machine's
noise hits both alike. p99 is over every timed query. Afterwards the audit chain is
verified and every query served must have left exactly one audit record. Progress goes
to stderr; the last line on stdout is the result:
    query qps=Q p99_ms=P baseline_qps=B ratio=X
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from nats.aio.client import Client

from bench.harness import BenchError, bench_mesh, log, mesh_up, percentile, running
from core import subjects
from core.audit import GENESIS, audit_hash, verify_chain
from core.config import Settings
from core.events import AuditRecorded
from core.logs import configure_logging
from core.store import EventStore, Identity, connect
from mahavishnu.control import operators
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.server import NatsServer
from mahavishnu.runtime.streams import streams_of

QUERY = "mesh.q.audit.search"
BODY = b'{"device":"dev-a"}'
ECHO = "mesh.q.bench.echo"
AUDITOR = "bench-auditor"
DEVICES = 40
PAGE = 100  # the search's default limit


def audit_entries(n: int, devices: int = DEVICES) -> list[AuditRecorded]:
    """A chained trail shaped like a fleet's (pure): per ten entries, four commands and a certificate
    rotation about one device, four connection events and one query; dev-a is the first device."""
    names = ["dev-a", *(f"dev-{k:03d}" for k in range(1, devices))]
    entries: list[AuditRecorded] = []
    previous = GENESIS
    for i in range(n):
        device, kind = names[(i // 10) % devices], i % 10
        if kind < 4:
            entry = AuditRecorded(
                actor="ops-ann",
                category="command",
                action="command.send",
                target=device,
                details={"command_id": f"c-{i}", "name": "ping"},
                prev_hash=previous,
            )
        elif kind == 4:
            entry = AuditRecorded(
                actor="control", category="identity", action="device.rotate", target=device, prev_hash=previous
            )
        elif kind < 9:
            action = "connection.open" if kind % 2 else "connection.close"
            entry = AuditRecorded(actor=device, category="connection", action=action, target="MESH", prev_hash=previous)
        else:
            entry = AuditRecorded(actor="ops-ann", category="query", action="devices.get", prev_hash=previous)
        entries.append(entry)
        previous = audit_hash(entry)
    return entries


async def seed(home: Home, settings: Settings, entries: int, folder: Path) -> Identity:
    """Write the audit trail and add an auditor through a server of our own, before `up` starts."""
    server = NatsServer(home.server_conf, name="bench-seed")
    server.start()
    try:
        nc = await connect(home.control_identity(settings), name="bench-seed", reconnect=False)
        store = EventStore(nc, streams_of(settings))
        await store.ensure_streams()
        report = await store.append_many(audit_entries(entries))
        assert report.acknowledged == entries, report
        issued = operators.add(home, settings, AUDITOR, "auditor", out_dir=folder / AUDITOR)
        await nc.close()
    finally:
        server.stop()
    assert issued.key_path is not None
    return Identity(home.control_identity(settings).url, issued.ca_path, issued.cert_path, issued.key_path)


async def hammer(nc: Client, subject: str, body: bytes, seconds: float, concurrency: int) -> tuple[float, list[float]]:
    """`concurrency` requesters asking `subject` for `seconds`: (replies per second, latencies in seconds)."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def requester() -> None:
        while (sent := time.perf_counter()) < stop_at:
            reply = await nc.request(subject, body, timeout=10)
            if reply.headers and "Nats-Service-Error-Code" in reply.headers:
                raise BenchError(f"{subject} answered {reply.headers}")
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(requester() for _ in range(concurrency)))
    return len(latencies) / (time.perf_counter() - started), latencies


async def check_audit(control: Identity, settings: Settings, entries: int, served: int) -> None:
    """The chain is intact and holds exactly one record per query served."""
    nc = await connect(control, name="bench-verify", reconnect=False)
    try:
        chain = [
            (s.seq, s.event if isinstance(s.event, AuditRecorded) else None)
            async for s in EventStore(nc, streams_of(settings)).read("mesh.audit.>")
        ]
    finally:
        await nc.close()
    breaks = verify_chain(chain)
    recorded = sum(1 for _, e in chain[entries:] if e and e.actor == AUDITOR and e.action == "audit.search")
    log(f"audit: {len(chain)} entries, {len(breaks)} chain breaks, {recorded} records of {served} searches served")
    if breaks or recorded != served:
        raise BenchError(f"the audit trail is wrong: {breaks[:3]}, {recorded} records for {served} searches")


async def measure(
    auditor: Identity, seconds: float, rounds: int, concurrency: int, expected: int
) -> tuple[list[float], list[float], list[float], int]:
    """Alternating rounds of echo and search: (search rates, echo rates, search latencies, searches served)."""
    nc = await connect(auditor, name="bench-client", reconnect=False, inbox_prefix=subjects.inbox_prefix(AUDITOR))
    try:
        answer = msgspec.json.decode((await nc.request(QUERY, BODY, timeout=10)).data)
        if len(answer.get("entries", [])) != expected:
            raise BenchError(f"the search should answer {expected} entries: {str(answer)[:300]}")
        served = 1
        warm = min(1.0, seconds / rounds / 4)
        for subject, body in ((ECHO, BODY), (QUERY, BODY)):
            _, done = await hammer(nc, subject, body, warm, concurrency)
            served += len(done) if subject == QUERY else 0
        query_rates: list[float] = []
        base_rates: list[float] = []
        latencies: list[float] = []
        for r in range(rounds):
            order = ((ECHO, base_rates), (QUERY, query_rates))
            for subject, rates in order if r % 2 == 0 else reversed(order):
                rate, done = await hammer(nc, subject, BODY, seconds / rounds, concurrency)
                rates.append(rate)
                if subject == QUERY:
                    latencies += done
                    served += len(done)
            log(f"round {r + 1}/{rounds}: baseline {base_rates[-1]:,.0f}/s, query {query_rates[-1]:,.0f}/s")
    finally:
        await nc.close()
    return query_rates, base_rates, latencies, served


@contextmanager
def echo_service(home: Home, port: int, env: dict[str, str], log_path: Path) -> Iterator[None]:
    """bench/echo_service.py running on ECHO until the block ends."""
    command = [sys.executable, str(Path(__file__).with_name("echo_service.py")), str(home.root), str(port), ECHO]
    with running(command, env, log_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as echo:
        if echo.stdout is None or echo.stdout.readline().strip() != "ready":
            raise BenchError(f"the echo service did not start:\n{log_path.read_text()}")
        yield
        assert echo.stdin is not None
        echo.stdin.close()  # the echo service stops at the end of its input
        echo.wait(10)


async def main(seconds: float, rounds: int, entries: int, concurrency: int) -> str:
    with bench_mesh() as mesh:
        log(f"seeding the audit trail with {entries} entries")
        auditor = await seed(mesh.home, mesh.settings, entries, mesh.root)
        expected = min(PAGE, sum(1 for e in audit_entries(entries) if e.target == "dev-a"))
        with mesh_up(mesh):
            with echo_service(mesh.home, mesh.settings.server.port, mesh.env, mesh.root / "echo.log"):
                log(f"mesh up; {rounds} rounds of {seconds / rounds:g} s each, concurrency {concurrency}")
                query_rates, base_rates, latencies, served = await measure(
                    auditor, seconds, rounds, concurrency, expected
                )
            await check_audit(mesh.home.control_identity(mesh.settings), mesh.settings, entries, served)
    p99 = percentile(latencies, 0.99) * 1000
    qps, base = statistics.median(query_rates), statistics.median(base_rates)
    return f"query qps={qps:.0f} p99_ms={p99:.1f} baseline_qps={base:.0f} ratio={qps / base:.2f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="timed seconds of each side, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entries", type=int, default=10_000, help="audit entries in the read model")
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()
    configure_logging(level="warning", fmt="text")
    import uvloop

    print(uvloop.run(main(options.seconds, options.rounds, options.entries, options.concurrency)))
