"""Keeps every read model of the catalog up to date while the mesh runs (`mahavishnu up`).

Each projection follows its sources: a core subscription on them wakes the runner as
soon as something is appended, and a slow timer catches anything a wake-up missed.
Whoever must read what it just appended waits until a read model has applied that
position (`ProjectionService.wait`), instead of reading the history itself.
While it runs it holds an exclusive lock on the read-model folder, so `projections
rebuild` and `db rekey` from another process refuse instead of changing files under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from core.errors import MahavishnuError
from core.metrics import CampaignMetrics, ProjectionMetrics
from core.sealing import KeyStore
from core.store import EventStore
from projections.catalog import CATALOG, build
from projections.runner import ProjectionRunner

log = logging.getLogger("mahavishnu.projections")

LOCK_FILE = "projections.lock"
SAFETY_INTERVAL_S = 2.0
LAG_SAMPLE_S = 5.0  # how often the lag metrics are refreshed while running
BUSY = 100  # events applied in one round that mean more are coming: look again without waiting


class ReadModelsBusy(MahavishnuError):
    """Another process (a running `mahavishnu up`) owns the read models."""


class FolderLock:
    """An exclusive, non-blocking flock on the read-model folder."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ReadModelsBusy(
                f"the read models in {self.path.parent} are in use by a running `mahavishnu up`: stop it first"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class ProjectionService:
    def __init__(
        self,
        store: EventStore,
        directory: Path,
        key: str,
        names: tuple[str, ...] | None = None,
        *,
        metrics: ProjectionMetrics | None = None,
        keys: KeyStore | None = None,
        campaign_metrics: CampaignMetrics | None = None,
    ) -> None:
        chosen = names or tuple(CATALOG)
        self.metrics = metrics
        self._lag_sampled_at = -LAG_SAMPLE_S
        self.runners = [
            ProjectionRunner(build(name, keys, campaign_metrics=campaign_metrics), store, directory=directory, key=key)
            for name in chosen
        ]
        self.store = store
        self.lock = FolderLock(directory)
        # One runner is either catching up or rebuilding, never both at once.
        self._busy = {runner.projection.name: asyncio.Lock() for runner in self.runners}
        self._wake = asyncio.Event()
        self._woken: set[str] = set()  # the sources whose subscription woke the service since its last round
        # Set while caught up and waiting for a wake-up, its subscriptions in place.
        self.listening = asyncio.Event()
        # Each read model's positions as last committed, and a condition notified when they move.
        self.applied: dict[str, dict[str, int]] = {}
        self._moved = asyncio.Condition()
        self.caught_up = False

    async def start(self) -> None:
        """Lock the folder, open (validate, maybe rebuild) every read model and catch up."""
        self.lock.acquire()
        for runner in self.runners:
            await runner.open()
            if runner.rebuilt_because:
                log.warning(
                    "read model rebuilt", extra={"projection": runner.projection.name, "reason": runner.rebuilt_because}
                )
            await self._catch_up(runner)
        self.caught_up = True
        await self._sample_lag()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the streams until `stop` is set.

        While events keep coming (a round applied at least BUSY of them) the next round
        starts at once and the wake-up subscriptions are dropped: each of them delivers
        every event, payload and all, only to say "look again", which under thousands of
        events a second cost `up` more than applying them. Once a round finds little, they
        are taken again, and one more round looks for anything appended while there were none.

        A round woken by the subscriptions looks only at the read models whose sources woke
        it: a command's report says nothing new to the audit or code-index models, and asking
        each of them (a batched direct get per source) hundreds of times a second cost more
        than applying the reports. Every other round (the first, one after a busy stretch or
        a resubscription, the safety timer's) looks at all of them.

        A wake-up can come too early: the subscription hears an event as it is published,
        and the round it wakes may read the stream before the event is stored there. Then
        nothing wakes that model again until its next event, so at least every
        SAFETY_INTERVAL_S a round looks at all of them, however many wake-ups the other
        models get meanwhile (a dashboard's queries wake the audit model several times a
        second, and once left a campaign's last event unapplied for good).
        """

        def wake_on(source: str) -> Callable[[Any], Awaitable[None]]:
            async def wake(_: Any) -> None:
                self._woken.add(source)
                self._wake.set()

            return wake

        sources = sorted({source for runner in self.runners for source in runner.projection.sources})
        subscriptions: list[Any] = []
        every = True
        looked_at_all = time.monotonic()  # when the last round that looked at every model began
        try:
            while not stop.is_set():
                self._wake.clear()
                woken, self._woken = self._woken, set()
                now = time.monotonic()
                every = every or now - looked_at_all >= SAFETY_INTERVAL_S
                if every:
                    looked_at_all = now
                applied = await self._round(None if every else woken)
                if time.monotonic() - self._lag_sampled_at >= LAG_SAMPLE_S:
                    await self._sample_lag()
                every = True
                if applied >= BUSY:
                    await _unsubscribe(subscriptions)
                    subscriptions = []
                    continue
                if not subscriptions:
                    subscriptions = [await self.store.nc.subscribe(source, cb=wake_on(source)) for source in sources]
                    continue  # anything appended before these existed is found by the next round
                self.listening.set()
                await _first_of(self._wake, stop, timeout=SAFETY_INTERVAL_S)
                self.listening.clear()
                every = not self._wake.is_set()  # the safety timer's round looks at every model
        finally:
            await _unsubscribe(subscriptions)

    async def _round(self, woken: set[str] | None = None) -> int:
        """Catch read models up once, all at the same time; how many events they applied in all.

        `woken`: only the models with one of these sources (None: every model).
        Together, not one after the other: each writes on its own connection's thread, where
        SQLite runs without the GIL, and one model's backlog does not add to another's lag.
        """
        runners = [r for r in self.runners if woken is None or not woken.isdisjoint(r.projection.sources)]
        return sum(await asyncio.gather(*(self._follow_once(runner) for runner in runners)))

    async def _follow_once(self, runner: ProjectionRunner) -> int:
        name = runner.projection.name
        try:
            async with self._busy[name]:
                return await self._catch_up(runner)
        except MahavishnuError as exc:
            log.error("projection failed; retrying", extra={"projection": name, "reason": str(exc)})
            return 0

    async def _catch_up(self, runner: ProjectionRunner) -> int:
        applied = await runner.catch_up()
        name = runner.projection.name
        await self._note_positions(runner)
        if self.metrics is not None:
            self.metrics.applied.labels(projection=name).inc(applied)
            for source, position in self.applied[name].items():
                self.metrics.position.labels(projection=name, source=source).set(position)
        return applied

    async def _note_positions(self, runner: ProjectionRunner) -> None:
        """Note the runner's committed positions and wake whoever waits on them (see `wait`)."""
        positions = await runner.positions()  # read between transactions: what readers of the file see
        async with self._moved:
            self.applied[runner.projection.name] = positions
            self._moved.notify_all()

    async def wait(self, name: str, positions: Mapping[str, int], timeout: float) -> dict[str, int]:
        """Wait until read model `name` has applied, for each source in `positions`, that stream sequence.

        Returns the model's positions then. This is eventsourcing's
        `ProjectionRunner.wait(notification_id, timeout)`: whoever appended an event and
        wants to read its effect waits on the position, then reads one row, instead of
        replaying history. Raises MahavishnuError for an unknown read model or source, and
        TimeoutError when the positions are not reached within `timeout` seconds.
        """
        if name not in self._busy:
            raise MahavishnuError(f"no read model {name!r}: choose one of {', '.join(sorted(self._busy))}")
        sources = next(r.projection.sources for r in self.runners if r.projection.name == name)
        unknown = sorted(set(positions) - set(sources))
        if unknown:
            raise MahavishnuError(f"the {name} read model has no source {', '.join(unknown)}: it reads {sources}")

        def reached() -> bool:
            applied = self.applied.get(name, {})
            return all(applied.get(source, 0) >= seq for source, seq in positions.items())

        async with asyncio.timeout(timeout), self._moved:
            await self._moved.wait_for(reached)
            return dict(self.applied[name])

    async def _sample_lag(self) -> None:
        """Lag and parked counts for the metrics: asked of the server, so sampled, not measured per event."""
        self._lag_sampled_at = time.monotonic()
        if self.metrics is None:
            return
        for runner in self.runners:
            name = runner.projection.name
            try:
                async with self._busy[name]:
                    events, seconds = await runner.lag()
                    parked = await runner.parked_count()
            except MahavishnuError as exc:
                log.warning("lag not measured", extra={"projection": name, "reason": str(exc)})
                continue
            self.metrics.lag_events.labels(projection=name).set(events)
            self.metrics.lag_seconds.labels(projection=name).set(seconds)
            self.metrics.parked.labels(projection=name).set(parked)

    async def rebuild(self, name: str, progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild one read model while the others, and queries on the old file, carry on."""
        runner = next((r for r in self.runners if r.projection.name == name), None)
        if runner is None:
            raise MahavishnuError(f"no read model {name!r}: choose one of {', '.join(sorted(self._busy))}")
        async with self._busy[name]:
            applied = await runner.rebuild(progress)
            await self._note_positions(runner)
            return applied

    async def close(self) -> None:
        for runner in self.runners:
            await runner.close()
        self.lock.release()


async def _unsubscribe(subscriptions: list[Any]) -> None:
    for subscription in subscriptions:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Until one of `events` is set, or `timeout` seconds: a stop ends the wait at once, not after it."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
