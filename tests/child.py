"""A Python child run from the repository's root, for what a test must see in a fresh interpreter
(which modules an import loads, a module blocked from importing): its JSON answer on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def python_json(script: str, *args: str, timeout: float = 60) -> Any:
    """`python -c script args...` with the repository on its path; what it printed, as JSON. Fails if it fails."""
    ran = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(ran.stdout)
