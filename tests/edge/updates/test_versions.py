"""is_older: dotted numbers compare as numbers, pre-releases before their release, build metadata ignored."""

from __future__ import annotations

import pytest

from edge.updates.versions import is_older


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.9", "1.10"),
        ("1.2.3", "1.3"),
        ("0.9.9", "1"),
        ("1.2.0-rc.1", "1.2.0"),
        ("1.2.0-rc.2", "1.2.0-rc.10"),
        ("1.2.0-alpha", "1.2.0-beta"),
        ("1.2.9", "1.2.x"),
        ("2024.1.5", "2024.12.0"),
    ],
)
def test_older_comes_before_newer_and_not_the_other_way(older: str, newer: str) -> None:
    assert is_older(older, newer)
    assert not is_older(newer, older)


@pytest.mark.parametrize(("a", "b"), [("1.2", "1.2.0"), ("1.2.0+build.7", "1.2.0"), ("3", "3.0.0+x")])
def test_equal_versions_are_not_older(a: str, b: str) -> None:
    assert not is_older(a, b)
    assert not is_older(b, a)
