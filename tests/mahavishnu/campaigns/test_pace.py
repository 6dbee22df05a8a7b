"""The pace: no 60 s window over the rate, notifications spread, the exponential rate's steps (pure)."""

from __future__ import annotations

import bisect
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from core.campaigns.spec import ExponentialRate, IncreaseAfter, Pace
from mahavishnu.campaigns.pace import UNPACED, WINDOW_S, budget, rate


def simulate(pace: Pace, *, seconds: float, step: float = 0.1, succeed: bool = False) -> list[float]:
    """Ask for budget every `step` s with a queue that never empties, and take all of it; the send times."""
    sent: list[float] = []
    for tick in range(round(seconds / step)):
        now = tick * step
        recent = sent[bisect.bisect_left(sent, now - WINDOW_S) :]
        allowed, after = budget(pace, recent, now, notified=len(sent), succeeded=len(sent) if succeed else 0)
        assert after >= 0
        sent.extend([now] * allowed)
    return sent


def largest_window(sent: list[float]) -> int:
    """The most notifications any 60 s window holds (each window starts at a notification)."""
    return max((bisect.bisect_left(sent, t + WINDOW_S) - i for i, t in enumerate(sent)), default=0)


def largest_second(sent: list[float]) -> int:
    return max((bisect.bisect_left(sent, t + 1.0) - i for i, t in enumerate(sent)), default=0)


def test_thirty_minutes_at_the_maximum_never_exceed_it_in_any_window_and_are_spread() -> None:
    sent = simulate(Pace(maximum_per_minute=600), seconds=30 * 60)
    assert largest_window(sent) <= 600
    assert largest_second(sent) <= 20  # about 10 a second, never the whole minute's share at once
    assert len(sent) >= 0.95 * 600 * 30  # and the rate is used, not wasted


def test_a_slow_rate_is_one_device_every_so_often() -> None:
    sent = simulate(Pace(maximum_per_minute=4), seconds=10 * 60)
    assert largest_window(sent) <= 4
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 15 - 0.1 - 1e-9  # 60/4 s apart, give or take one tick of asking


def test_the_exponential_rate_steps_up_by_its_factor_every_number_devices_up_to_its_maximum() -> None:
    exponential = ExponentialRate(base_per_minute=10, increment_factor=2, number=50, maximum_per_minute=160)
    pace = Pace(exponential=exponential)
    assert [rate(pace, notified=n, succeeded=0) for n in (0, 49, 50, 99, 100, 150, 200, 10_000)] == [
        10,
        10,
        20,
        20,
        40,
        80,
        160,
        160,
    ]
    sent = simulate(pace, seconds=20 * 60)
    # Every notification kept to the rate in force when it was sent: the window that ends at it
    # holds no more than the rate of the count before it.
    for index, t in enumerate(sent):
        in_window = index + 1 - bisect.bisect_right(sent, t - WINDOW_S)
        assert in_window <= rate(pace, notified=index, succeeded=0)
    assert largest_window(sent) <= 160
    assert largest_window(sent[-200:]) >= 150  # it did reach its maximum


def test_counting_succeeded_devices_ignores_the_notified_ones() -> None:
    pace = Pace(
        exponential=ExponentialRate(
            base_per_minute=5, increment_factor=1.5, number=10, increase_after=IncreaseAfter.SUCCEEDED
        )
    )
    assert rate(pace, notified=1000, succeeded=9) == 5
    assert rate(pace, notified=0, succeeded=20) == 5 * 1.5 * 1.5


def test_an_exponential_rate_without_a_maximum_stops_limiting_instead_of_overflowing() -> None:
    pace = Pace(exponential=ExponentialRate(base_per_minute=1, increment_factor=5, number=1))
    assert rate(pace, notified=10_000, succeeded=0) is None
    assert budget(pace, [], 0.0, notified=10_000, succeeded=0) == (UNPACED, 0.0)


def test_no_pace_is_no_limit() -> None:
    assert budget(Pace(), [0.0] * 10_000, 0.0, notified=10_000, succeeded=0) == (UNPACED, 0.0)


def test_a_full_window_says_when_room_comes_back() -> None:
    pace = Pace(maximum_per_minute=3)
    allowed, after = budget(pace, [0.0, 20.0, 40.0], 50.0, notified=3, succeeded=0)
    assert (allowed, after) == (0, 10.0)  # the one sent at 0 leaves the window at 60
    assert budget(pace, [0.0, 20.0, 40.0], 60.0, notified=3, succeeded=0)[0] == 1


@settings(max_examples=60, deadline=None)
@given(
    per_minute=st.integers(min_value=1, max_value=1200),
    asks=st.lists(st.floats(min_value=0, max_value=0.5, allow_nan=False), min_size=1, max_size=1500),
    takes=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=10),
)
def test_whenever_it_is_asked_and_however_much_is_taken_no_window_exceeds_the_rate(
    per_minute: int, asks: list[float], takes: list[float]
) -> None:
    pace = Pace(maximum_per_minute=per_minute)
    sent: list[float] = []
    now = 0.0
    for index, gap in enumerate(asks):
        now += gap
        recent = sent[bisect.bisect_left(sent, now - WINDOW_S) :]
        allowed, _ = budget(pace, recent, now, notified=len(sent), succeeded=0)
        taken = round(allowed * takes[index % len(takes)])  # the queue may hold fewer than allowed
        sent.extend([now] * taken)
    assert largest_window(sent) <= per_minute
