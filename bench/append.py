"""Append throughput: our event store's bulk path against raw nats-py `publish_async`, same server, same run.

    python bench/append.py [--events N] [--rounds R]

Starts an embedded nats-server with the mesh's own configuration (mTLS, encrypted
JetStream) in a temporary state directory, then alternates R rounds of
  - baseline: nats-py `JetStreamContext.publish_async` of the same ~200-byte payloads,
    each with its `Nats-Msg-Id`, every acknowledgement awaited;
  - ours: `EventStore.append_many` (fast batch publish, every acknowledgement checked).
The medians are compared, since one machine's noise hits both alike. Progress goes to
stderr; the last line on stdout is the result:
    append events=N rate=R baseline_natspy=B ratio=X
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_config
from core.events import Event, TelemetryReported, encode
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer


def make_events(n: int, device: str) -> list[Event]:
    # Eight metrics make an encoded event of about 200 bytes, a typical telemetry sample.
    return [TelemetryReported(device_id=device, metrics={f"m{k}": i + k / 8 for k in range(8)}) for i in range(n)]


async def baseline(nc: object, events: list[Event]) -> float:
    js = nc.jetstream(publish_async_max_pending=4000)  # type: ignore[attr-defined]
    payloads = [(e.subject(), encode(e), e.event_id) for e in events]
    started = time.perf_counter()
    futures = [await js.publish_async(s, p, headers={"Nats-Msg-Id": i}) for s, p, i in payloads]
    acks = await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    assert len(acks) == len(events) and not any(a.duplicate for a in acks)
    return len(events) / elapsed


async def ours(store: EventStore, events: list[Event]) -> float:
    started = time.perf_counter()
    report = await store.append_many(events)
    elapsed = time.perf_counter() - started
    assert report.acknowledged == len(events), report
    return len(events) / elapsed


async def main(n: int, rounds: int) -> str:
    with tempfile.TemporaryDirectory(prefix="mahavishnu-bench-") as tmp:
        settings = load_config(None, env={})
        home = Home(Path(tmp))
        prepare(home, settings, port=-1, monitor_port=0)
        server = NatsServer(home.server_conf, name="bench")
        endpoints = server.start()
        try:
            nc = await connect(home.control_identity(settings, endpoints.port), name="bench", reconnect=False)
            store = EventStore(nc)
            await store.ensure_streams()
            size = len(encode(make_events(1, "bench-size")[0]))
            print(f"payload ~{size} bytes, {n} events per run, {rounds} rounds", file=sys.stderr)
            base_rates, our_rates = [], []
            for r in range(rounds):
                base_rates.append(await baseline(nc, make_events(n, f"base-{r}")))
                our_rates.append(await ours(store, make_events(n, f"ours-{r}")))
                print(
                    f"round {r + 1}/{rounds}: baseline {base_rates[-1]:,.0f}/s, ours {our_rates[-1]:,.0f}/s",
                    file=sys.stderr,
                )
            await nc.close()
        finally:
            server.stop()
    rate, base = statistics.median(our_rates), statistics.median(base_rates)
    return f"append events={n} rate={rate:.0f} baseline_natspy={base:.0f} ratio={rate / base:.2f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    configure_logging(level="warning", fmt="text")
    import uvloop

    print(uvloop.run(main(options.events, options.rounds)))
