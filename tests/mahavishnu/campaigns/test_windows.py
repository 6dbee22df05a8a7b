"""Schedules: start, end and maintenance windows in named time zones, daylight saving included (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.campaigns.spec import Schedule, Window
from mahavishnu.campaigns.windows import check_cron, check_zone, is_open, next_opening

NEW_YORK = ZoneInfo("America/New_York")
# Every quarter hour from 08:00 to 09:45 on weekdays, five minutes each, on New York's clock.
QUARTERS = Window(cron="*/15 8-9 * * mon-fri", duration_s=300, timezone="America/New_York")


def by_hand(now: datetime) -> bool:
    local = now.astimezone(NEW_YORK)
    return local.weekday() < 5 and local.hour in (8, 9) and local.minute % 15 < 5


def test_a_window_is_open_exactly_when_its_cron_and_duration_say_so() -> None:
    schedule = Schedule(windows=[QUARTERS])
    now = datetime(2026, 5, 4, tzinfo=UTC)  # a week without a change of daylight saving time
    while now < datetime(2026, 5, 11, tzinfo=UTC):
        assert is_open(schedule, now) == by_hand(now), now
        now += timedelta(seconds=97)  # lands on every second of the minute in turn, edges included


def test_the_next_opening_is_open_and_nothing_before_it_is() -> None:
    schedule = Schedule(windows=[QUARTERS], end=datetime(2026, 5, 20, tzinfo=UTC))
    for now in (
        datetime(2026, 5, 8, 21, 0, tzinfo=UTC),  # a Friday evening: Monday 08:00 in New York
        datetime(2026, 5, 5, 12, 4, 59, tzinfo=UTC),  # open at that moment
        datetime(2026, 5, 5, 12, 5, tzinfo=UTC),  # just closed: 12:15
    ):
        opens = next_opening(schedule, now)
        assert opens is not None and is_open(schedule, opens)
        moment = now
        while moment < opens:
            assert not is_open(schedule, moment)
            moment += timedelta(seconds=30)
    assert next_opening(schedule, datetime(2026, 5, 8, 21, 0, tzinfo=UTC)) == datetime(2026, 5, 11, 12, tzinfo=UTC)
    assert next_opening(schedule, datetime(2026, 5, 19, 23, 0, tzinfo=UTC)) is None  # the end comes first


def test_daylight_saving_keeps_the_wall_clock_and_the_skipped_hour_opens_after_it() -> None:
    nightly = Schedule(windows=[Window(cron="0 2 * * *", duration_s=3600, timezone="Europe/Berlin")])
    # Winter: 02:00 in Berlin is 01:00 UTC; summer: 00:00 UTC.
    assert is_open(nightly, datetime(2026, 3, 20, 1, 30, tzinfo=UTC))
    assert not is_open(nightly, datetime(2026, 3, 20, 0, 30, tzinfo=UTC))
    assert is_open(nightly, datetime(2026, 6, 20, 0, 30, tzinfo=UTC))
    assert not is_open(nightly, datetime(2026, 6, 20, 1, 30, tzinfo=UTC))
    # 29 March 2026 has no 02:00 in Berlin (02:00 CET becomes 03:00 CEST): the window opens at
    # 03:00 CEST (01:00 UTC), as Debian's cron runs such a job, and lasts its hour.
    assert next_opening(nightly, datetime(2026, 3, 28, 12, tzinfo=UTC)) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert is_open(nightly, datetime(2026, 3, 29, 1, 59, tzinfo=UTC))
    assert not is_open(nightly, datetime(2026, 3, 29, 2, tzinfo=UTC))


def test_start_and_end_bound_everything() -> None:
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    schedule = Schedule(start=start, end=end)
    assert not is_open(schedule, start - timedelta(microseconds=1))
    assert is_open(schedule, start)
    assert not is_open(schedule, end)
    assert next_opening(schedule, start - timedelta(days=3)) == start
    assert next_opening(schedule, end) is None
    assert is_open(Schedule(), start)


@pytest.mark.parametrize(
    ("cron", "zone", "said"),
    [
        ("0 2 * *", "UTC", "has 4 fields"),
        ("0 25 * * *", "UTC", "is no cron expression"),
        ("0 2 31 2 *", "UTC", "is no cron expression"),
        ("0 2 * * sat", "Mars/Olympus", "is no time zone known here"),
        ("0 2 * * sat", "../etc/passwd", "is no time zone known here"),
    ],
)
def test_bad_expressions_and_zones_are_said_to_be_so(cron: str, zone: str, said: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_cron(cron)
        check_zone(zone)
    assert said in str(raised.value)
    assert "\n" not in str(raised.value)
