"""Jittered exponential backoff: bounded, growing, and spread."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge import backoff


@given(st.integers(min_value=0, max_value=100), st.floats(min_value=0, max_value=0.999999))
def test_a_delay_stays_within_its_ceiling(attempt: int, rand: float) -> None:
    ceiling = min(30.0, 0.5 * 2**attempt)
    assert 0 <= backoff.delay(attempt, rand=rand) <= ceiling


def test_the_ceiling_doubles_up_to_the_cap() -> None:
    ceilings = [backoff.delay(n, rand=0.999999) for n in range(8)]
    assert ceilings == sorted(ceilings)
    assert ceilings[-1] <= 30.0 and ceilings[0] <= 0.5


def test_delays_are_spread_so_a_fleet_does_not_return_at_once() -> None:
    assert len({round(backoff.delay(5), 6) for _ in range(50)}) > 40
