"""The lock files pin what pyproject.toml asks for: `make lock` was run after its last change.

A dependency added to pyproject.toml but missing from the lock would install on a
developer's machine (pip resolves it) and fail on a fresh one (--require-hashes refuses
anything unpinned); a version pinned outside pyproject.toml's range means the lock is stale.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.M)


def pins(lock: str) -> dict[str, Version]:
    text = (ROOT / "requirements" / lock).read_text()
    return {canonicalize_name(name): Version(version) for name, version in PIN.findall(text)}


def test_every_pin_has_hashes() -> None:
    for lock in ("dev.txt", "edge.txt"):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / lock).read_text())
        for block in blocks:
            if PIN.match(block):
                assert "--hash=sha256:" in block, f"{lock}: {block.splitlines()[0]} has no hash"


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [
        ("dev.txt", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]),
        ("edge.txt", PROJECT["optional-dependencies"]["edge"]),
    ],
)
def test_lock_pins_what_pyproject_asks(lock: str, wanted: list[str]) -> None:
    pinned = pins(lock)
    for line in wanted:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"sys_platform": "linux"}):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement.name} is not in requirements/{lock}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements/{lock} pins {name}=={pinned[name]}, outside pyproject.toml's {requirement.specifier}: "
            "run `make lock`"
        )


def test_edge_lock_is_only_the_edge_install() -> None:
    """A device installs the edge list and what those need (uv's "# via" names who), nothing of the control plane."""
    edge = {canonicalize_name(Requirement(line).name) for line in PROJECT["optional-dependencies"]["edge"]}
    pinned = set(pins("edge.txt"))
    assert edge <= pinned
    text = (ROOT / "requirements" / "edge.txt").read_text()
    for name in pinned - edge:
        block = re.search(rf"^{re.escape(name)}==.*?(?=^\S|\Z)", text, re.M | re.S | re.I)
        assert block is not None
        needed_by = {
            canonicalize_name(who) for who in re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9._-]+)\s*$", block[0], re.M)
        }
        assert needed_by & pinned, f"requirements/edge.txt pins {name}, which no edge dependency needs"
