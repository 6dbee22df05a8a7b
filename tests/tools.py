"""System tools some tests drive (promtool, prometheus, systemd-analyze...).

Without one of them a test skips, except in CI (.ci/run installs them all), where it must run.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI") == "true"


def tool(name: str) -> str:
    """The path of the executable `name`; skip the test without it, fail it in CI."""
    found = shutil.which(name)
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"needs {name}")
    return found
