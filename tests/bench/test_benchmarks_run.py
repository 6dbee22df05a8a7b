"""Each benchmark still runs and prints its result line (small sizes: timing is not judged here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_append_benchmark_prints_its_line() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "append.py"), "--events", "2000", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"append events=2000 rate=\d+ baseline_natspy=\d+ ratio=\d+\.\d\d", last), last
    assert "round 1/1" in result.stderr  # progress is shown


def test_the_rebuild_benchmark_prints_its_line() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "rebuild.py"), "--events", "3000", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    pattern = r"rebuild events=3000 rate=\d+ baseline_replay=\d+ ratio=\d+\.\d\d rss_mb=\d+"
    assert re.fullmatch(pattern, last), last
    assert "round 1/1" in result.stderr and "rebuild 3,000/3,000" in result.stderr  # progress is shown


def test_the_query_benchmark_prints_its_line() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "query.py"), "--seconds", "1", "--rounds", "1", "--entries", "1000"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"query qps=\d+ p99_ms=\d+\.\d baseline_qps=\d+ ratio=\d+\.\d\d", last), last
    assert "round 1/1" in result.stderr  # progress is shown
    assert "0 chain breaks" in result.stderr  # and the audit trail it left was checked


def test_the_cluster_benchmark_prints_its_line() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "cluster.py"), "--events", "2000", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"cluster rate_r3=\d+ rate_r1=\d+ ratio=\d+\.\d\d", last), last
    assert "round 1/1" in result.stderr  # progress is shown


def test_the_cli_benchmark_prints_its_line() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "cli.py"), "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"cli help_ms=\d+ cmd_wait_ms=\d+ baseline_ms=\d+ ratio=\d+\.\d\d", last), last
    assert "cmd send --wait 1/1" in result.stderr  # progress is shown
