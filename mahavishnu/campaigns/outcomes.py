"""The devices' command reports, as the orchestrator takes them: a durable consumer of its own on EVENTS.

Every report on mesh.evt.device.*.command (accepted, running, and each ending, the
cancels the control side records included) reaches the orchestrator through the durable
consumer `campaigns`, acknowledged only once the ExecutionChanged it caused is stored:
reports that come while the orchestrator is down wait for it, and one it took but had not
acknowledged when it crashed comes back after ACK_WAIT_S. Reports of other commands are
acknowledged as they are taken. The consumer starts with the reports that come after it
was first made (`up`'s first start), not the history of EVENTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import nats.errors
import nats.js.errors

from core.commands import step
from core.commands.lifecycle import CommandState
from core.events import CommandEvent
from core.store import EventStore
from core.store.records import StoredEvent
from core.subjects import COMMAND_REPORTS

log = logging.getLogger("mahavishnu.campaigns")

CONSUMER = "campaigns"
STREAM = "EVENTS"
REPORTS = COMMAND_REPORTS
ACK_WAIT_S = 5.0
FETCH = 200
FETCH_WAIT_S = 1.0
STOP_SLACK_S = 2.0  # beyond a fetch's wait, how long closing waits for the loop to end


def consumer_config() -> dict[str, object]:
    """The orchestrator's durable pull consumer of the command reports (pure)."""
    return {
        "filter_subject": REPORTS,
        "deliver_policy": "new",
        "ack_policy": "explicit",
        "ack_wait": int(ACK_WAIT_S * 1e9),
        "max_ack_pending": 20_000,
        "replay_policy": "instant",
    }


@dataclass(frozen=True)
class Report:
    """One device's report of a step of one command."""

    device_id: str
    command_id: str
    state: CommandState
    detail: str
    message: Any

    async def ack(self) -> None:
        with contextlib.suppress(nats.errors.Error):
            await self.message.ack()


class Outcomes:
    """`async with Outcomes(store, wake)`: fetches reports in the background and sets `wake`; `take()` them."""

    def __init__(self, store: EventStore, wake: asyncio.Event) -> None:
        self.store = store
        self.wake = wake
        self.taken: list[Report] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._sub: Any = None

    async def __aenter__(self) -> Outcomes:
        await self.store.ensure_durable(STREAM, CONSUMER, consumer_config())
        self._sub = await self.store.js.pull_subscribe_bind(durable=CONSUMER, stream=STREAM)
        self._task = asyncio.create_task(self._fetch(), name="campaign reports")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._task is not None:
            # nats-py's fetch can swallow a cancel on Python 3.11 (its wait_for), and the loop
            # would then fetch on and keep up's stop waiting for ever (bench/reconnect.py hung
            # once so): the loop also ends by itself at its next turn, within FETCH_WAIT_S.
            self._closing = True
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=FETCH_WAIT_S + STOP_SLACK_S)
            if self._task.done() and not self._task.cancelled():
                self._task.exception()  # taken: how it ended no longer matters
        with contextlib.suppress(nats.errors.Error):
            await self._sub.unsubscribe()

    def take(self) -> list[Report]:
        """The reports fetched since the last call, in order; the caller acknowledges each once handled."""
        taken, self.taken = self.taken, []
        return taken

    async def _fetch(self) -> None:
        while not self._closing:
            try:
                messages = await self._sub.fetch(FETCH, timeout=FETCH_WAIT_S)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("fetching command reports failed", extra={"reason": str(exc)})
                await asyncio.sleep(FETCH_WAIT_S)
                continue
            for message in messages:
                report = _report(message)
                if report is None:
                    with contextlib.suppress(nats.errors.Error):
                        await message.ack()
                else:
                    self.taken.append(report)
            self.wake.set()


def _report(message: Any) -> Report | None:
    """The report a delivered message holds, None when it is none (it does not decode, or is no step of a
    command, or names another device than the subject it was published on)."""
    meta = message.metadata
    stored = StoredEvent.of(STREAM, meta.sequence.stream, message.subject, message.data)
    event = stored.event
    if not isinstance(event, CommandEvent) or message.subject.split(".")[3] != event.device_id:
        return None
    found = step(event)
    if found is None:
        return None
    return Report(event.device_id, event.command_id, found.state, found.detail, message)
