"""Keeps `up`'s children alive: restarts them with backoff, gives up loudly when they keep crashing.

Two kinds of child, one policy (RestartPolicy): the nats-server process (Supervisor) and
the services `up` runs in its own process, as asyncio tasks (keep_running): the
projections, the code index, the connected-agents sampler. Giving up raises GaveUp, which
ends `up` with that message and a non-zero exit, for systemd (Restart=on-failure) or a
person to take over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from core.errors import MahavishnuError
from mahavishnu.runtime.server import NatsServer, ServerStartError

log = logging.getLogger("mahavishnu.supervisor")


# How long an exit of the server may precede `up`'s own stop signal when both come from one group signal:
# up's loop takes the signal in milliseconds; a second covers a loaded machine.
SIGNAL_GRACE_S = 1.0


class GaveUp(MahavishnuError):
    """The child crashed too often in too short a time."""


@dataclass(frozen=True)
class RestartPolicy:
    """Restart after `initial` seconds, doubling to `maximum`; give up after `max_crashes` within `window` seconds."""

    initial: float = 0.5
    maximum: float = 30.0
    max_crashes: int = 5
    window: float = 300.0

    def delay(self, consecutive: int) -> float:
        """Backoff before restart number `consecutive` (1-based) (pure)."""
        return float(min(self.maximum, self.initial * 2.0 ** max(0, consecutive - 1)))

    def exhausted(self, crash_times: deque[float], now: float) -> bool:
        """True when `max_crashes` crashes fall within the last `window` seconds (pure)."""
        recent = [t for t in crash_times if now - t <= self.window]
        return len(recent) >= self.max_crashes


class Supervisor:
    """Watches one NatsServer; `watch()` returns when stopped and raises GaveUp when the policy is exhausted."""

    def __init__(self, server: NatsServer, policy: RestartPolicy) -> None:
        self.server = server
        self.policy = policy
        self.restarts = 0
        self._stopping = False
        self._crashes: deque[float] = deque(maxlen=max(1, policy.max_crashes))

    @property
    def running(self) -> bool:
        return self.server.running

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)

    async def watch(self, until: asyncio.Event | None = None) -> None:
        """Restart the server after each exit until stopping; `until` set (up's stop signal) also means stopping.

        A signal sent to every process of `up`'s control group (systemd's default KillMode)
        stops the server in the same instant as it reaches `up`: an exit seen just before
        `until` is set is given SIGNAL_GRACE_S to turn out to be part of that stop.
        """
        consecutive = 0
        while True:
            started = time.monotonic()
            code = await asyncio.to_thread(self.server.wait)
            grace = SIGNAL_GRACE_S if until is not None else 0.0  # part of the backoff below
            if self._stopping or await _set_within(until, grace):
                self._stopping = True
                log.info("nats-server stopped with up", extra={"server": self.server.name, "exit_code": code})
                return
            now = time.monotonic()
            consecutive = 1 if now - started > self.policy.window else consecutive + 1
            self._crashes.append(now)
            last = " | ".join(list(self.server.recent)[-3:])
            if self.policy.exhausted(self._crashes, now):
                raise GaveUp(
                    f"nats-server crashed {self.policy.max_crashes} times within {self.policy.window:.0f} s "
                    f"(last exit code {code}; last lines: {last}): giving up; see the log above"
                )
            delay = self.policy.delay(consecutive)
            log.error(
                "nats-server exited unexpectedly; restarting",
                extra={"server": self.server.name, "exit_code": code, "restart_in_s": delay, "last_lines": last},
            )
            if await _set_within(until, max(0.0, delay - grace)):  # the backoff, cut short by a stop
                self._stopping = True
                return
            try:
                await asyncio.to_thread(self.server.start)
                self.restarts += 1
                log.info("nats-server restarted", extra={"server": self.server.name, "restarts": self.restarts})
            except ServerStartError as exc:
                log.error("nats-server failed to restart", extra={"server": self.server.name, "reason": str(exc)})

    def stopping(self) -> None:
        """From now on an exit of the server is expected, not a crash."""
        self._stopping = True

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.to_thread(self.server.stop)


async def _set_within(event: asyncio.Event | None, seconds: float) -> bool:
    """True once `event` is set, waiting at most `seconds` for it; without an event, after `seconds`, False."""
    if event is None:
        await asyncio.sleep(seconds)  # the restart backoff itself
        return False
    if event.is_set():
        return True
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def keep_running(name: str, run: Callable[[], Awaitable[None]], policy: RestartPolicy) -> None:
    """Await `run()` until it returns; after a crash (any exception) call it again, with backoff.

    GaveUp, naming the service and its last error, once `policy.max_crashes` crashes fall
    within `policy.window` seconds. Cancellation is not a crash: it propagates.
    """
    crashes: deque[float] = deque(maxlen=max(1, policy.max_crashes))
    consecutive = 0
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except Exception as exc:
            now = time.monotonic()
            consecutive = 1 if now - started > policy.window else consecutive + 1
            crashes.append(now)
            if policy.exhausted(crashes, now):
                raise GaveUp(
                    f"the {name} service crashed {policy.max_crashes} times within {policy.window:.0f} s "
                    f"(last: {type(exc).__name__}: {exc}): giving up; see the log above"
                ) from exc
            delay = policy.delay(consecutive)
            log.error(
                "service crashed; restarting",
                extra={"service": name, "reason": f"{type(exc).__name__}: {exc}", "restart_in_s": delay},
                # ours say what and why in one line (the store unreachable, say); others need their traceback
                exc_info=None if isinstance(exc, MahavishnuError) else exc,
            )
            await asyncio.sleep(delay)
