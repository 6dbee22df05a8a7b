"""Enrolment as the fleet grows: is the cost of one more device flat in the fleet's size?

    python bench/enrol.py [--devices N]

Prepares a state directory, runs the real `mahavishnu up` (its identity service admits the
devices), then enrols N devices one after another as `mahavishnu device enroll` does
(control.devices.enroll: certificate, agent.toml, command consumer, events and audit
record), each timed. Every 1,000th device then connects with its own certificate, so the
figure counts only enrolments the server honours. The baseline is the same run's first
100 enrolments; the ratio compares the last 100 with them (the issue's bound: ≤ 2).
Progress goes to stderr; the last line on stdout is the result:
    enrol devices=N rate=R first100_ms=A last100_ms=B ratio=X connect_ms=C server_rss_mb=M
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

from bench.harness import BenchError, BenchMesh, bench_mesh, log, mesh_up
from core import subjects
from core.store import EventStore, Identity, connect
from mahavishnu.control import devices

WINDOW = 100  # enrolments averaged at each end of the run
CONNECT_EVERY = 1000


def server_rss_mb(home_root: Path) -> int:
    pid = int((home_root / "nats" / "server.pid").read_text())
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


async def connect_device(url: str, folder: Path, device_id: str) -> float:
    """Seconds until the device's own certificate opens a connection (the identity service admits it)."""
    started = time.perf_counter()
    identity = Identity(url, folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    client = await connect(
        identity, name=device_id, reconnect=False, inbox_prefix=subjects.device_inbox_prefix(device_id)
    )
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


async def enrol_all(mesh: BenchMesh, count: int, out: Path) -> tuple[list[float], list[float]]:
    home, settings = mesh.home, mesh.settings
    nc = await connect(home.control_identity(settings), name="bench-enrol", reconnect=False)
    store = EventStore(nc)
    durations: list[float] = []
    connects: list[float] = []
    try:
        for i in range(count):
            device_id = f"fleet-{i:05d}"
            started = time.perf_counter()
            await devices.enroll(home, settings, store, device_id, out_dir=out / device_id)
            durations.append(time.perf_counter() - started)
            if (i + 1) % CONNECT_EVERY == 0 or i + 1 == count:
                connects.append(await connect_device(home.client_url(settings), out / device_id, device_id))
            if (i + 1) % 500 == 0:
                recent = statistics.mean(durations[-WINDOW:]) * 1000
                log(f"enrolled {i + 1:,}/{count:,} (last {WINDOW}: {recent:.1f} ms each)")
    finally:
        await nc.close()
    return durations, connects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    args = parser.parse_args()
    if args.devices < 2 * WINDOW:
        raise SystemExit(f"--devices {args.devices}: enrol at least {2 * WINDOW} to compare both ends")
    with bench_mesh() as mesh, mesh_up(mesh), tempfile.TemporaryDirectory(prefix="enrol-") as tmp:
        started = time.perf_counter()
        durations, connects = asyncio.run(enrol_all(mesh, args.devices, Path(tmp)))
        elapsed = time.perf_counter() - started
        rss = server_rss_mb(mesh.home.root)
    first = statistics.mean(durations[:WINDOW]) * 1000
    last = statistics.mean(durations[-WINDOW:]) * 1000
    print(
        f"enrol devices={args.devices} rate={args.devices / elapsed:.0f} first100_ms={first:.1f} "
        f"last100_ms={last:.1f} ratio={last / first:.2f} connect_ms={max(connects) * 1000:.0f} server_rss_mb={rss}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
