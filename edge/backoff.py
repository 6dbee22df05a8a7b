"""Jittered exponential backoff (pure): how long an agent waits before its next connection attempt.

"Full jitter": a uniformly random delay between 0 and min(cap, base * 2**attempt), so a
fleet that lost its server does not come back all at the same instant.
"""

from __future__ import annotations

import random


def delay(attempt: int, *, base: float = 0.5, cap: float = 30.0, rand: float | None = None) -> float:
    """The wait before attempt number `attempt` (0-based); `rand` in [0, 1) for tests, random otherwise."""
    ceiling = float(min(cap, base * 2.0 ** max(0, attempt)))
    return ceiling * (random.random() if rand is None else rand)
