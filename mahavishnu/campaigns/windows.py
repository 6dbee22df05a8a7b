"""Stand-in for helper/policies' windows.py (start and end only), replaced when that branch is merged."""

from __future__ import annotations

from datetime import datetime

from core.campaigns.spec import Schedule


def is_open(schedule: Schedule, now: datetime) -> bool:
    return (schedule.start is None or now >= schedule.start) and (schedule.end is None or now < schedule.end)


def next_opening(schedule: Schedule, now: datetime) -> datetime | None:
    return None if is_open(schedule, now) else schedule.start
