"""bench/agent_footprint.py still builds the device venv, runs its agent and prints its line (timing not judged)."""

from __future__ import annotations

import re

from tests.bench.running import run_bench

LINE = (
    r"agent rss_mb=\d+\.\d start_ms=\d+ idle_cpu_pct=\d+\.\d{3} first_event_ms=\d+"
    r" baseline_rss_mb=\d+\.\d baseline_start_ms=\d+ baseline_idle_cpu_pct=\d+\.\d{3}"
    r" control_host_rss_mb=\d+\.\d control_host_start_ms=\d+"
)


def test_the_agent_footprint_benchmark_prints_its_line() -> None:
    last, progress = run_bench("agent_footprint.py", "--idle-seconds", "1", "--starts", "1", timeout=240)
    assert re.fullmatch(LINE, last), last
    # The device venv holds the edge lock's packages and ours, nothing of the control plane.
    installed = re.search(r"device venv \S+: (.*)", progress)
    assert installed is not None, progress
    assert {"cryptography", "sqlcipher3", "uvloop"}.isdisjoint(installed.group(1).split(", ")), installed.group(1)
    assert "start 1/1" in progress
