"""A token bucket (pure: the caller passes the time): how often one claim may ask, with a burst.

A request that finds the bucket empty is refused at once ("slow down"), never queued: a
device that floods the service costs it one comparison per message, and nothing waits
behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    burst: float  # the most it holds, and what it starts with
    tokens: float = field(init=False)
    stamp: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        """Take one token at `now` (monotonic seconds); False when none is left."""
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
