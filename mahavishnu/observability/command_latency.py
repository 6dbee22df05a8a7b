"""Command latency for the metrics: from a command's issue to its end, by outcome.

The control process watches commands being issued (mesh.cmd.>) and devices reporting
their end (mesh.evt.device.*.command) as they happen, on plain subscriptions: a metric
describes what happens now, so a rebuild or a restart must not observe old commands
again. A command issued before this process started has no known issue time and is not
observed; neither is one whose end never comes (the clock forgets the oldest first).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.commands import ending
from core.events import CommandEvent, CommandIssued, EventDecodeError, decode
from core.events.base import Event
from core.metrics import CommandMetrics
from core.subjects import COMMAND_REPORTS, COMMANDS_PREFIX

log = logging.getLogger("mahavishnu.command_latency")

SUBJECTS = (f"{COMMANDS_PREFIX}.>", COMMAND_REPORTS)


class CommandClock:
    """Issue times of the commands in flight; `seen(event)` gives (outcome, seconds) at a command's end (pure)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._issued: OrderedDict[str, datetime] = OrderedDict()

    def seen(self, event: Event) -> tuple[str, float] | None:
        if isinstance(event, CommandIssued):
            self._issued[event.command_id] = event.occurred_at
            while len(self._issued) > self.capacity:
                self._issued.popitem(last=False)
            return None
        outcome = ending(event)
        if outcome is None or not isinstance(event, CommandEvent):
            return None
        issued = self._issued.pop(event.command_id, None)
        if issued is None:
            return None
        return outcome, max(0.0, (event.occurred_at - issued).total_seconds())

    def __len__(self) -> int:
        return len(self._issued)


async def follow(nc: Client, metrics: CommandMetrics, clock: CommandClock | None = None) -> list[Any]:
    """Observe command latencies into `metrics` from now on; returns the subscriptions."""
    clock = clock if clock is not None else CommandClock()

    async def on_message(msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except (EventDecodeError, msgspec.MsgspecError):
            return  # the projections park malformed events with their reason; a metric just skips them
        ended = clock.seen(event)
        if ended is not None:
            outcome, seconds = ended
            metrics.command_seconds.labels(outcome=outcome).observe(seconds)

    return [await nc.subscribe(subject, cb=on_message) for subject in SUBJECTS]
