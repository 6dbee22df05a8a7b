"""Artifact versions in order: numbers as numbers, pre-releases before their release, build metadata ignored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.updates.versions import is_older, latest, version_key


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        ("1.9.7", "1.10.2"),
        ("1.0", "1.0.1"),
        ("2.0.0-rc.1", "2.0.0"),
        ("2.0.0-rc.2", "2.0.0-rc.10"),
        ("2.0.0-alpha", "2.0.0-beta"),
        ("1.0.1", "1.0.a"),  # a number before text
        ("0.9", "1.0-rc.1"),
        ("2024_11_30", "2024_12_01"),
    ],
)
def test_the_older_version_comes_first(older: str, newer: str) -> None:
    assert is_older(older, newer) and not is_older(newer, older)
    assert latest([newer, older]) == newer


def test_build_metadata_does_not_count() -> None:
    assert not is_older("2.0.0+b7", "2.0.0+b8") and not is_older("2.0.0+b8", "2.0.0+b7")
    assert latest([]) is None


versions = st.from_regex(r"[0-9]{1,3}(\.[0-9a-z]{1,3}){0,3}(-[a-z0-9.]{1,5})?", fullmatch=True)


@given(versions, versions, versions)
def test_the_order_is_a_total_order(a: str, b: str, c: str) -> None:
    assert not (is_older(a, b) and is_older(b, a))
    if is_older(a, b) and is_older(b, c):
        assert is_older(a, c)
    assert is_older(a, b) or is_older(b, a) or version_key(a) == version_key(b)
