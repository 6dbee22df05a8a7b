"""A command's outcome for tests that run devices without `mahavishnu up`.

`mahavishnu.control.commands.wait_for_outcome` asks the running mesh's commands read
model. Tests of the agent and the gateways run a bare nats-server and no read models, so
they follow the device's reports themselves: the stored ones and those arriving, folded
with the CLI's pure fold (the same command state machine, core.commands).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from core import subjects
from core.errors import MahavishnuError
from core.events import CommandIssued, Event, decode
from core.store import EventStore
from mahavishnu.control.commands import CommandView, fold


async def follow_outcome(store: EventStore, command: CommandIssued, *, deadline_s: float) -> CommandView:
    """Follow the device's command reports until `command` finishes or `deadline_s` passes; its view then."""
    live: list[Event] = []  # what arrives while we also read what was stored before
    done = asyncio.Event()

    async def on_event(msg: Any) -> None:
        with contextlib.suppress(MahavishnuError):  # a malformed event is not ours to judge here
            live.append(decode(msg.data))
        if fold(command, live).finished:
            done.set()

    subject = subjects.device_event(command.device_id, "command")
    sub = await store.nc.subscribe(subject, cb=on_event)
    try:
        stored = [s.event async for s in store.read(subject) if s.event is not None]
        if not fold(command, [*stored, *live]).finished:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), deadline_s)
    finally:
        await sub.unsubscribe()
    return fold(command, [*stored, *live])
