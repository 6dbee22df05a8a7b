"""The code-index benchmark still runs and prints its result line (small sizes: timing is not judged here)."""

from __future__ import annotations

import re

from tests.bench.running import run_bench


def test_the_index_benchmark_prints_its_line() -> None:
    last, progress = run_bench("index.py", "--lines", "3000", "--changed", "3", timeout=180)
    pattern = (
        r"index files=(\d+) lines=(\d+) seconds=\d+\.\d\d lines_per_s=\d+ incremental_s=\d+\.\d{3}"
        r" baseline_lines_per_s=\d+ ratio=\d+\.\d\d"
    )
    match = re.fullmatch(pattern, last)
    assert match, last
    assert int(match[2]) >= 3000 and int(match[1]) > 3
    assert "incremental index of 3 files" in progress  # progress is shown
    assert "0 values leaked" in progress  # and the stream was searched for the planted secrets
