"""When the fleet changed in a way that may make more devices match a continuous campaign's filter.

A continuous campaign also reaches devices that match later. Rather than ask the devices
read model again and again (each query is audited), the orchestrator watches the events
that change what a filter matches, on plain subscriptions (what happens now: changes
made while it was down are covered by the query every campaign makes when it resumes):
a device enrolled (an agent or an MQTT device), tagged, or an SSH host registered. A
change is asked about once the read model has applied it (its subject's last sequence).
Presence and sites change with heartbeats and links, far too often to watch: a slow
periodic query (the orchestrator's RETARGET_EVERY_S) covers them.
"""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.subjects import EVENTS_PREFIX

WATCHED = tuple(f"{EVENTS_PREFIX}.device.*.{what}" for what in ("enrolled", "tagged", "ssh"))


class FleetChanges:
    """`async with FleetChanges(nc) as changes`: `version` counts the changes seen, `take()` their subjects."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.version = 0
        self._subjects: set[str] = set()
        self._subs: list[Any] = []

    async def __aenter__(self) -> FleetChanges:
        self._subs = [await self.nc.subscribe(subject, cb=self._seen) for subject in WATCHED]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for sub in self._subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _seen(self, msg: Msg) -> None:
        self.version += 1
        self._subjects.add(msg.subject)

    def take(self) -> set[str]:
        """The subjects changed since the last call."""
        taken, self._subjects = self._subjects, set()
        return taken
