"""How many devices a campaign may notify now: its pace (pure).

Two guarantees, both computed from the times of the notifications in the last 60 s alone
(the orchestrator's own events hold them, so a restarted orchestrator keeps the pace):

- No 60 s window ever holds more notifications than the rate in force: a notification at
  `now` counts every earlier one with `now - t < 60`, and is allowed only if the total
  stays within the rate.
- Notifications are spread over the minute, not sent at once: a cell-rate schedule (GCRA)
  lets one interval (60/rate s) pass per notification, with a burst of at most one
  second's worth. 600 per minute is 10 every second, not 600 in the first one.

The rate is the fixed `maximum_per_minute`, or the exponential one: `base_per_minute`,
multiplied by `increment_factor` each time `number` more devices were notified (or
succeeded), up to its own maximum. The specfile refuses rates under 1 per minute: 60 s of
history could not keep a slower one.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from core.campaigns.spec import IncreaseAfter, Pace

WINDOW_S = 60.0
UNPACED = sys.maxsize  # the budget of a campaign without a pace: as fast as the mesh takes
# An exponential rate without a maximum of its own stops limiting anything long before this.
_UNLIMITED_PER_MINUTE = 1e9


def rate(pace: Pace, *, notified: int, succeeded: int) -> float | None:
    """The notifications per minute allowed now, or None when the pace sets no limit."""
    exponential = pace.exponential
    if exponential is None:
        return pace.maximum_per_minute
    counted = notified if exponential.increase_after == IncreaseAfter.NOTIFIED else succeeded
    steps = max(counted, 0) // exponential.number
    cap = exponential.maximum_per_minute
    # Past the cap the power only grows: stop there (and long before a float overflows).
    current = exponential.base_per_minute
    for _ in range(steps):
        current *= exponential.increment_factor
        if cap is not None and current >= cap:
            return cap
        if current >= _UNLIMITED_PER_MINUTE:
            return None
    return current if cap is None else min(current, cap)


def budget(pace: Pace, recent: Sequence[float], now: float, *, notified: int, succeeded: int) -> tuple[int, float]:
    """(how many devices may be notified at `now`, in how many seconds to ask again).

    `recent`: the times (epoch seconds) of the notifications of the last 60 s, in any order
    (older ones are ignored); `notified` and `succeeded`: the campaign's totals, for the
    exponential rate. When the budget is 0 the delay is when one more becomes possible;
    otherwise it is when the next one would be, had all of these been sent.
    """
    per_minute = rate(pace, notified=notified, succeeded=succeeded)
    if per_minute is None:
        return UNPACED, 0.0
    limit = max(1, math.floor(per_minute))
    window = sorted(t for t in recent if now - t < WINDOW_S)
    interval = WINDOW_S / per_minute
    burst = max(1, math.floor(per_minute / WINDOW_S))  # one second's worth
    tolerance = (burst - 1) * interval
    # The theoretical arrival time after the notifications of the window, as if each had conformed.
    arrival = -math.inf
    for t in window:
        arrival = max(arrival, t) + interval
    start = max(arrival, now)
    spread = math.floor((now + tolerance - start) / interval) + 1 if start <= now + tolerance else 0
    allowed = max(0, min(spread, limit - len(window)))
    if allowed:
        return allowed, max(0.0, start + allowed * interval - tolerance - now)
    waits = [start - tolerance - now]
    if len(window) >= limit:
        # The oldest ones must leave the window first: when the one that makes room does.
        waits.append(window[len(window) - limit] + WINDOW_S - now)
    return 0, max(0.0, *waits)
