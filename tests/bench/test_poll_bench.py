"""bench/poll.py still runs and prints its line (small sizes: timing is not judged here)."""

from __future__ import annotations

import re

from tests.bench.running import run_bench


def test_the_poll_benchmark_prints_its_line() -> None:
    last, _ = run_bench(
        "poll.py", "--repos", "8", "--interval", "1", "--seconds", "3", "--unreachable", "2", timeout=120
    )
    match = re.fullmatch(r"poll repos=8 polls=(\d+) max_concurrent=(\d+) failures=(\d+)", last)
    assert match, last
    polls, concurrent, failures = map(int, match.groups())
    assert polls >= 8 and 1 <= concurrent <= 2 and failures >= 2  # the unreachable ones failed
