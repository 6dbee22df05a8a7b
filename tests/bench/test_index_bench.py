"""The code-index benchmark still runs and prints its result line (small sizes: timing is not judged here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_the_index_benchmark_prints_its_line() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "index.py"), "--lines", "3000", "--changed", "3"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    pattern = (
        r"index files=(\d+) lines=(\d+) seconds=\d+\.\d\d lines_per_s=\d+ incremental_s=\d+\.\d{3}"
        r" baseline_lines_per_s=\d+ ratio=\d+\.\d\d"
    )
    match = re.fullmatch(pattern, last)
    assert match, last
    assert int(match[2]) >= 3000 and int(match[1]) > 3
    assert "incremental index of 3 files" in result.stderr  # progress is shown
    assert "0 values leaked" in result.stderr  # and the stream was searched for the planted secrets
