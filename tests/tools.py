"""System tools some tests drive (promtool, prometheus, systemd-analyze...).

Without one of them a test skips, except in CI (.ci/run installs them all), where it must run.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI") == "true"


def tool(name: str, *, also_in: tuple[str, ...] = ()) -> str:
    """The path of the executable `name` (on PATH, or in the folders `also_in`); skip the test without it,
    fail it in CI."""
    found = shutil.which(name) or (shutil.which(name, path=os.pathsep.join(also_in)) if also_in else None)
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"needs {name}")
    return found
