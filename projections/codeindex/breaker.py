"""One circuit breaker per remote host (pure; the clock is passed in).

closed     polls go ahead; `failures` consecutive failures open it
open       polls are skipped until `cooldown` seconds have passed, then
half-open  one trial poll goes ahead: success closes it, failure opens it again

Each call that changes the state returns the new state, so the caller can append a
CircuitChanged event and set the gauge; otherwise it returns None.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.events.repo import CircuitState


@dataclass
class Breaker:
    failures: int
    cooldown: float
    state: CircuitState = "closed"
    consecutive: int = 0
    opened_at: float = 0.0
    trial_running: bool = field(default=False)

    def allows(self, now: float) -> tuple[bool, CircuitState | None]:
        """Whether a poll may go ahead now, and the state it moved to if it moved."""
        if self.state == "closed":
            return True, None
        if self.state == "open" and now - self.opened_at >= self.cooldown:
            self.state, self.trial_running = "half-open", True
            return True, "half-open"
        if self.state == "half-open" and not self.trial_running:
            self.trial_running = True
            return True, None
        return False, None

    def succeeded(self) -> CircuitState | None:
        self.consecutive, self.trial_running = 0, False
        if self.state != "closed":
            self.state = "closed"
            return "closed"
        return None

    def failed(self, now: float) -> CircuitState | None:
        self.consecutive += 1
        self.trial_running = False
        if self.state == "half-open" or (self.state == "closed" and self.consecutive >= self.failures):
            self.state, self.opened_at = "open", now
            return "open"
        return None
