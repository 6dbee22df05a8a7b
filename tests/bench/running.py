"""Running a benchmark as its README line says, at a small size: what it printed last, and its progress."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run_bench(script: str, *args: str, timeout: float) -> tuple[str, str]:
    """`python bench/<script> ARGS`: its last stdout line (the result) and its stderr; it must exit 0."""
    result = subprocess.run(
        [sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1], result.stderr
