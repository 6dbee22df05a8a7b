"""Software update artifacts over the mesh: upload, one device's download, ten at once, memory, nats-py's get().

    python bench/ota.py [--size-mb 50] [--agents 10] [--rounds 3]

Prepares a state directory and runs the real `mahavishnu up` (its buckets, its auth
callout), writes a random artifact of --size-mb MiB and measures:
  upload_mb_s       `artifact add` (mahavishnu.updates.artifacts.add, the CLI's step, as the
                    control identity): the file streamed into the artifacts bucket, its event
                    and audit record appended
  download_mb_s     one device's download (edge.updates.download) in a process of its own,
                    connected with its own certificate through the auth callout, with a
                    device's permissions only; the download call alone is timed; the median
                    of --rounds downloads (the host is shared: one run varies)
  aggregate_mb_s    --agents devices downloading at once, one process each (one Python
                    process is CPU-bound): all bytes over the wall time from the first
                    download's start to the last one's end
  rss_growth_mb     the single downloading process's peak RSS during its download over its
                    RSS before (the peak is reset first through /proc/self/clear_refs); the
                    largest of the rounds
  baseline_get_mb_s nats-py's stock ObjectStore.get() of the same object, in this run
Speeds are in MB/s (10^6 bytes), sizes in MiB. Progress goes to stderr; the last line is
    ota size_mb=50 upload_mb_s=U download_mb_s=D agents=10 aggregate_mb_s=A rss_growth_mb=G baseline_get_mb_s=B
Targets: D >= 100, A >= 80, G <= 32.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import BenchError, BenchMesh, bench_mesh, log, mesh_up
from core import subjects
from core.store import EventStore, Identity, connect
from core.updates.naming import ARTIFACTS_BUCKET, target_path
from mahavishnu.control import devices
from mahavishnu.runtime.streams import streams_of
from mahavishnu.updates import artifacts

MIB = 1024 * 1024
MB = 1_000_000
NAME, VERSION = "ota-bench", "1.0.0"


def mb_s(size: int, seconds: float) -> float:
    return size / MB / seconds if seconds > 0 else 0.0


async def run(size_mb: int, agents: int, rounds: int) -> str:
    with bench_mesh() as mesh, mesh_up(mesh):
        source = mesh.root / "artifact.bin"
        with source.open("wb") as out:  # random, so nothing on the way compresses it
            for _ in range(size_mb):
                out.write(os.urandom(MIB))
        size = source.stat().st_size
        nc = await connect(mesh.home.control_identity(mesh.settings), name="bench-ota", reconnect=False)
        try:
            store = EventStore(nc, streams_of(mesh.settings))
            log(f"uploading {size_mb} MiB")
            started = time.perf_counter()
            added = await artifacts.add(store, source, name=NAME, version=VERSION, device_type="bench", actor="control")
            upload = mb_s(size, time.perf_counter() - started)
            log(f"uploaded at {upload:.1f} MB/s")
            folders = [await enrolled(mesh, store, f"ota-{i:02d}") for i in range(agents)]
            log(f"{agents} devices enrolled")
            singles = []
            for round_ in range(1, rounds + 1):
                [one] = await downloads(mesh, folders[:1], added.length, added.sha256)
                singles.append(one)
                log(f"round {round_}/{rounds}: {mb_s(size, one['end'] - one['start']):.1f} MB/s")
            download = statistics.median(mb_s(size, one["end"] - one["start"]) for one in singles)
            growth = max(one["rss_growth_mb"] for one in singles)
            log(f"one device: {download:.1f} MB/s, RSS grew {growth:.1f} MB")
            many = await downloads(mesh, folders, added.length, added.sha256)
            aggregate = mb_s(size * agents, max(r["end"] for r in many) - min(r["start"] for r in many))
            log(f"{agents} devices at once: {aggregate:.1f} MB/s in all")
            baseline = await stock_get(store, size)
            log(f"nats-py's ObjectStore.get(): {baseline:.1f} MB/s")
        finally:
            await nc.close()
    return (
        f"ota size_mb={size_mb} upload_mb_s={upload:.1f} download_mb_s={download:.1f} agents={agents} "
        f"aggregate_mb_s={aggregate:.1f} rss_growth_mb={growth:.1f} baseline_get_mb_s={baseline:.1f}"
    )


async def enrolled(mesh: BenchMesh, store: EventStore, device_id: str) -> Path:
    folder = mesh.root / "devices" / device_id
    await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=folder)
    return folder


async def downloads(mesh: BenchMesh, folders: list[Path], length: int, sha256: str) -> list[dict[str, Any]]:
    """One process per device, each connected and ready before any starts; their reports."""
    url = mesh.home.control_identity(mesh.settings).url
    children = []
    for folder in folders:
        spec = {"folder": str(folder), "url": url, "length": length, "sha256": sha256}
        children.append(
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--child", json.dumps(spec), stdin=PIPE, stdout=PIPE
            )
        )
    try:
        for child in children:
            if await _line(child) != "ready":
                raise BenchError(f"a downloading device did not connect (exit {child.returncode})")
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        reports = [json.loads(await _line(child)) for child in children]
    finally:
        for child in children:
            if await asyncio.wait_for(child.wait(), 120) != 0:
                raise BenchError(f"a downloading device exited {child.returncode}")
    for folder in folders:
        (folder / "artifact.bin").unlink()
    return reports


async def _line(child: asyncio.subprocess.Process) -> str:
    assert child.stdout is not None
    return (await child.stdout.readline()).decode().strip()


async def stock_get(store: EventStore, size: int) -> float:
    bucket = await store.js.object_store(ARTIFACTS_BUCKET)
    started = time.perf_counter()
    got = await bucket.get(target_path(NAME, VERSION))
    elapsed = time.perf_counter() - started
    if got.data is None or len(got.data) != size:
        raise BenchError("nats-py's get() returned another size")
    return mb_s(size, elapsed)


def _status(field: str) -> float:
    """A field of /proc/self/status in MB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} in /proc/self/status")


def _reset_peak() -> float:
    """Reset VmHWM to the RSS now (Linux: /proc/self/clear_refs); that RSS in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


async def child(spec: dict[str, Any]) -> None:
    """One device: connect as it, say ready, download on `go`, report times and RSS growth as JSON."""
    from edge.updates.download import download

    folder = Path(spec["folder"])
    device_id = folder.name
    identity = Identity(spec["url"], folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    nc = await connect(identity, name=device_id, inbox_prefix=subjects.device_inbox_prefix(device_id))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    before = _reset_peak()
    start = time.time()
    await download(
        nc,
        device_id=device_id,
        target=target_path(NAME, VERSION),
        dest=folder / "artifact.bin",
        length=spec["length"],
        sha256=spec["sha256"],
    )
    end = time.time()
    growth = _status("VmHWM") - before
    await nc.close()
    print(json.dumps({"start": start, "end": end, "rss_growth_mb": growth}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=50, help="the artifact's size in MiB")
    parser.add_argument("--agents", type=int, default=10, help="devices downloading at once")
    parser.add_argument("--rounds", type=int, default=3, help="single downloads, the median reported")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one downloading device (its spec, JSON)
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(json.loads(args.child)))
        return 0
    try:
        print(asyncio.run(run(args.size_mb, args.agents, args.rounds)))
    except BenchError as exc:
        log(f"ota: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
