"""When a campaign's schedule lets it notify devices: start, end and maintenance windows (pure).

A maintenance window opens at each time its cron expression names, read on the wall clock
of its time zone (IANA name, zoneinfo: "Europe/Berlin" keeps 02:00 at 02:00 across daylight
saving time), and stays open `duration_s`. With windows, nothing is notified outside all of
them; without, the schedule is open from its start (or at once) until its end.

cronsim parses and steps the expressions: five fields (minute hour day month weekday),
Debian cron's meaning of day-of-month and weekday together, and its handling of the hour
that daylight saving skips or repeats. The specfile checks each expression and zone with
`check_cron` and `check_zone` when the campaign is made, so here they are known to be good.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from core.campaigns.spec import Schedule, Window

CRON_FIELDS = 5


def check_cron(cron: str) -> None:
    """ValueError saying what is wrong with a window's cron expression, if anything is."""
    fields = cron.split()
    if len(fields) != CRON_FIELDS:
        raise ValueError(
            f"{cron!r} has {len(fields)} fields: a cron expression has 5 (minute hour day month weekday), "
            'e.g. "0 2 * * sat" for 02:00 every Saturday'
        )
    try:
        times = CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValueError(f'{cron!r} is no cron expression ({exc}); e.g. "0 2 * * sat"') from None
    if next(times, None) is None:
        raise ValueError(f"{cron!r} names no time in 50 years: check its day and month")


def check_zone(name: str) -> None:
    """ValueError saying so when `name` is no time zone known here."""
    _zone(name)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is no time zone known here: use an IANA name such as UTC or Europe/Berlin "
            "(the system's time zone data, or the tzdata package, holds them)"
        ) from None


def _last_opening(window: Window, now: datetime) -> datetime | None:
    """When `window` last opened at or before `now` (UTC), if ever in the last 50 years."""
    local = now.astimezone(_zone(window.timezone))
    # cronsim steps back one second before it looks: start just after `now` so that an opening
    # at `now` itself (to the second) is found.
    after = (local + timedelta(seconds=1)).replace(microsecond=0)
    opened = next(CronSim(window.cron, after, reverse=True), None)
    return None if opened is None else opened.astimezone(UTC)


def _next_opening(window: Window, now: datetime) -> datetime | None:
    """When `window` next opens after `now` (UTC)."""
    opens = next(CronSim(window.cron, now.astimezone(_zone(window.timezone))), None)
    return None if opens is None else opens.astimezone(UTC)


def window_open(window: Window, now: datetime) -> bool:
    """Whether `window` is open at `now` (an aware datetime)."""
    opened = _last_opening(window, now)
    # In UTC: an hour of daylight saving inside the window does not stretch or shrink it.
    return opened is not None and now.astimezone(UTC) < opened + timedelta(seconds=window.duration_s)


def is_open(schedule: Schedule, now: datetime) -> bool:
    """Whether devices may be notified at `now` (an aware datetime): after the start, before the end, in a window."""
    if schedule.start is not None and now < schedule.start:
        return False
    if schedule.end is not None and now >= schedule.end:
        return False
    return not schedule.windows or any(window_open(window, now) for window in schedule.windows)


def next_opening(schedule: Schedule, now: datetime) -> datetime | None:
    """The first time from `now` on (an aware datetime) when `is_open` holds, or None when it never will again."""
    first = max(now, schedule.start) if schedule.start is not None else now
    if schedule.end is not None and first >= schedule.end:
        return None
    if is_open(schedule, first):
        return first
    openings = [opens for window in schedule.windows if (opens := _next_opening(window, first)) is not None]
    if not openings:
        return None
    opens = min(openings)
    return opens if schedule.end is None or opens < schedule.end else None
