"""The benchmarks' harness: a bench stopped by SIGTERM leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
# A bench that made its mesh's folder and a child process, then waits: what `kill` finds mid-run.
BENCH = """
import subprocess, sys, time
sys.path.insert(0, sys.argv[1])
from bench.harness import bench_mesh, running
with bench_mesh(prepared=False) as mesh:
    with running([sys.executable, "-c", "import time; time.sleep(600)"], mesh.env, mesh.root / "child.log") as child:
        print(mesh.root, child.pid, flush=True)
        time.sleep(600)
"""


def test_a_bench_stopped_by_sigterm_stops_its_children_and_removes_its_folder() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", BENCH, str(ROOT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as bench:
        assert bench.stdout is not None
        folder, child = bench.stdout.readline().split()
        assert Path(folder).is_dir()
        bench.send_signal(signal.SIGTERM)
        _, said = bench.communicate(timeout=60)
    assert bench.returncode == 128 + signal.SIGTERM, said
    assert not Path(folder).exists()
    wait_until(lambda: not _alive(int(child)), timeout=30, what="the bench's child to be stopped")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()
