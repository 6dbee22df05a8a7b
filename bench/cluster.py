"""Replicated appends: an R3 stream on a 3-node loopback cluster against an R1 stream on one server, same run.

    python bench/cluster.py [--events N] [--rounds R]

Starts, in temporary state directories prepared as `mahavishnu up` prepares one (mTLS,
encrypted JetStream), a 3-node cluster through the code `up --cluster 3` runs
(mahavishnu.runtime.cluster: routes over mutual TLS, streams with 3 replicas) and a single
server (streams with 1 replica). Then it alternates R rounds of `EventStore.append_many`
of N ~200-byte events (fast batch publish, every acknowledgement checked), on the R1
stream and on the R3 stream, each from a client connected with every URL of its
servers. The medians are compared, since one machine's noise hits both alike: every
node of the cluster runs on the same cores, so the ratio is the price of replication
where the replicas compete with the leader for CPU, a lower bound for separate hosts.
Progress goes to stderr; the last line on stdout is the result:
    cluster rate_r3=A rate_r1=B ratio=X
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.append import make_events
from core.config import load_config
from core.events import Event
from core.logs import configure_logging
from core.store import EventStore, connect
from mahavishnu.runtime.cluster import ClusterSupervisor, create_streams, prepare_cluster
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer
from mahavishnu.runtime.streams import streams_of
from mahavishnu.runtime.supervisor import RestartPolicy
from tests.harness import free_port_run


async def timed(store: EventStore, events: list[Event]) -> float:
    started = time.perf_counter()
    report = await store.append_many(events)
    elapsed = time.perf_counter() - started
    assert report.acknowledged == len(events), report
    return len(events) / elapsed


async def main(n: int, rounds: int) -> str:
    with (
        tempfile.TemporaryDirectory(prefix="mahavishnu-bench-r1-") as r1_dir,
        tempfile.TemporaryDirectory(prefix="mahavishnu-bench-r3-") as r3_dir,
    ):
        single_settings = load_config(None, env={})
        single_home = Home(Path(r1_dir))
        prepare(single_home, single_settings, port=-1, monitor_port=0)
        single = NatsServer(single_home.server_conf, name="bench-r1")
        endpoints = single.start()

        cluster_env = {
            "MAHAVISHNU_SERVER__CLUSTER": "3",
            "MAHAVISHNU_SERVER__PORT": str(free_port_run(3)),
            "MAHAVISHNU_SERVER__CLUSTER_PORT": str(free_port_run(3)),
            "MAHAVISHNU_SERVER__MONITOR_PORT": "0",
        }
        cluster_settings = load_config(None, env=cluster_env)
        cluster_home = Home(Path(r3_dir))
        cluster = ClusterSupervisor(
            prepare_cluster(cluster_home, cluster_settings), RestartPolicy(), mesh=cluster_settings.mesh.name
        )
        try:
            print("starting a single server and a 3-node cluster", file=sys.stderr)
            await cluster.start()
            if cluster.problems:
                raise SystemExit("; ".join(cluster.problems.values()))
            r1_nc = await connect(single_home.control_identity(single_settings, endpoints.port), name="bench-r1")
            r3_nc = await connect(cluster_home.control_identity(cluster_settings), name="bench-r3")
            r1 = EventStore(r1_nc, streams_of(single_settings))
            r3 = EventStore(r3_nc, streams_of(cluster_settings))
            await r1.ensure_streams()
            await create_streams(r3, cluster)
            print(f"{n} events per run, {rounds} rounds", file=sys.stderr)
            r1_rates, r3_rates = [], []
            for r in range(rounds):
                r1_rates.append(await timed(r1, make_events(n, f"r1-{r}")))
                r3_rates.append(await timed(r3, make_events(n, f"r3-{r}")))
                print(f"round {r + 1}/{rounds}: R1 {r1_rates[-1]:,.0f}/s, R3 {r3_rates[-1]:,.0f}/s", file=sys.stderr)
            await r1_nc.close()
            await r3_nc.close()
        finally:
            cluster.stopping()
            await cluster.stop()
            single.stop()
    rate_r3, rate_r1 = statistics.median(r3_rates), statistics.median(r1_rates)
    return f"cluster rate_r3={rate_r3:.0f} rate_r1={rate_r1:.0f} ratio={rate_r3 / rate_r1:.2f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    configure_logging(level="error", fmt="text")  # the nodes' route errors while they find each other are expected
    import uvloop

    print(uvloop.run(main(options.events, options.rounds)))
