"""bench/poll.py still runs and prints its line (small sizes: timing is not judged here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_poll_benchmark_prints_its_line() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "poll.py"),
            "--repos",
            "8",
            "--interval",
            "1",
            "--seconds",
            "3",
            "--unreachable",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"poll repos=8 polls=(\d+) max_concurrent=(\d+) failures=(\d+)", last)
    assert match, last
    polls, concurrent, failures = map(int, match.groups())
    assert polls >= 8 and 1 <= concurrent <= 2 and failures >= 2  # the unreachable ones failed
