"""HTTP query throughput: `GET /api/audit?device=...` against a raw Starlette endpoint on the same server.

    python bench/http_query.py [--seconds S] [--rounds R] [--entries N] [--concurrency C]

Prepares a state directory and seeds the AUDIT stream as bench/query.py does (N chained
entries, an auditor), issues the auditor a bearer token, then runs the real `mahavishnu
up` (nats-server, read models, projections) and, in its own process, bench/http_door.py:
the mesh's HTTP door (HTTPS, tokens, Admission, audit trail) with `/bench/raw` beside it,
a plain endpoint answering the very bytes of the search. C requesters, each on its own
kept-alive HTTPS connection (a minimal HTTP/1.1 client, so that the load generator is not
what is measured), alternate rounds between the two; the medians of the rounds'
rates are compared, p99 is over every timed query. Afterwards the audit chain is verified
and every search served must have left exactly one audit record. Progress goes to
stderr; the last line on stdout is the result:
    http_query qps=Q p99_ms=P baseline_qps=B ratio=X
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchError, bench_mesh, free_port, log, mesh_up, percentile, running
from bench.query import AUDITOR, PAGE, audit_entries, check_audit, seed
from core.logs import configure_logging
from mahavishnu.control import tokens
from mahavishnu.runtime.home import Home

DEVICE = "dev-a"


@contextmanager
def http_door(home: Home, nats_port: int, http_port: int, env: dict[str, str], log_path: Path) -> Iterator[None]:
    """bench/http_door.py serving on 127.0.0.1:`http_port` (HTTPS) until the block ends."""
    command = [sys.executable, str(Path(__file__).with_name("http_door.py")), str(home.root)]
    command += [str(nats_port), str(http_port), DEVICE]
    with running(command, env, log_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as door:
        if door.stdout is None or door.stdout.readline().strip() != "ready":
            raise BenchError(f"the HTTP door did not start:\n{log_path.read_text()}")
        yield
        assert door.stdin is not None
        door.stdin.close()
        door.wait(10)


class Connection:
    """One kept-alive HTTPS connection speaking just enough HTTP/1.1 for GETs answered with a Content-Length.

    The load generator must not be what is measured: httpx spends about 2.5 ms of CPU a
    request here (its pool checks every connection per request), which capped the raw
    endpoint at ~240 requests a second with the server mostly idle. This costs tens of
    microseconds, like a wrk connection.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, token: str) -> None:
        self.reader, self.writer = reader, writer
        self.head = f"Host: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"

    @classmethod
    async def open(cls, host: str, port: int, token: str, tls: ssl.SSLContext) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls, limit=1 << 20)
        return cls(reader, writer, f"{host}:{port}", token)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(f"GET {path} HTTP/1.1\r\n{self.head}".encode())
        status_line, _, headers = (await self.reader.readuntil(b"\r\n\r\n")).partition(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def hammer(connections: list[Connection], path: str, seconds: float) -> tuple[float, list[float]]:
    """One requester per connection getting `path` for `seconds`: (answers per second, latencies in seconds)."""
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def requester(connection: Connection) -> None:
        while (sent := time.perf_counter()) < stop_at:
            status, body = await connection.get(path)
            if status != 200:
                raise BenchError(f"{path} answered {status}: {body[:300]!r}")
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(requester(c) for c in connections))
    return len(latencies) / (time.perf_counter() - started), latencies


async def measure(
    port: int, token: str, ca: Path, seconds: float, rounds: int, concurrency: int, expected: int
) -> tuple[list[float], list[float], list[float], int]:
    """Alternating rounds of raw and search: (search rates, raw rates, search latencies, searches served)."""
    query, raw = f"/api/audit?device={DEVICE}", "/bench/raw"
    tls = ssl.create_default_context(cafile=ca)
    connections = [await Connection.open("127.0.0.1", port, token, tls) for _ in range(concurrency)]
    try:
        status, body = await connections[0].get(query)
        if status != 200 or len(json.loads(body).get("entries", [])) != expected:
            raise BenchError(f"the search should answer {expected} entries: {status} {body[:300]!r}")
        served = 1
        warm = min(1.0, seconds / rounds / 4)
        for path in (raw, query):
            _, done = await hammer(connections, path, warm)
            served += len(done) if path == query else 0
        query_rates: list[float] = []
        raw_rates: list[float] = []
        latencies: list[float] = []
        for r in range(rounds):
            order = ((raw, raw_rates), (query, query_rates))
            for path, rates in order if r % 2 == 0 else reversed(order):
                rate, done = await hammer(connections, path, seconds / rounds)
                rates.append(rate)
                if path == query:
                    latencies += done
                    served += len(done)
            log(f"round {r + 1}/{rounds}: raw {raw_rates[-1]:,.0f}/s, /api/audit {query_rates[-1]:,.0f}/s")
    finally:
        for connection in connections:
            await connection.close()
    return query_rates, raw_rates, latencies, served


async def main(seconds: float, rounds: int, entries: int, concurrency: int) -> str:
    with bench_mesh() as mesh:
        home, settings = mesh.home, mesh.settings
        log(f"seeding the audit trail with {entries} entries")
        await seed(home, settings, entries, mesh.root)
        token = tokens.issue(home, AUDITOR)
        expected = min(PAGE, sum(1 for e in audit_entries(entries) if e.target == DEVICE))
        http_port = free_port()
        with mesh_up(mesh):
            with http_door(home, settings.server.port, http_port, mesh.env, mesh.root / "door.log"):
                log(f"mesh up; {rounds} rounds of {seconds / rounds:g} s each, concurrency {concurrency}")
                query_rates, raw_rates, latencies, served = await measure(
                    http_port, token, home.ca_dir / "ca.pem", seconds, rounds, concurrency, expected
                )
            await check_audit(home.control_identity(settings), settings, entries, served)
    p99 = percentile(latencies, 0.99) * 1000
    qps, base_qps = statistics.median(query_rates), statistics.median(raw_rates)
    return f"http_query qps={qps:.0f} p99_ms={p99:.1f} baseline_qps={base_qps:.0f} ratio={qps / base_qps:.2f}"


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
