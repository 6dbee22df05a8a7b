"""The orchestrator killed with SIGKILL at random points, 20 times, and started again: it resumes from the stream.

It runs as its own process here (`python -m mahavishnu.campaigns.standalone`), as it would
die inside `up`. Every attempt of every execution is sent (and so run) at most once, the
pace holds across the restarts, and the counts folded from CAMPAIGNS equal what the
devices reported.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

from core import subjects
from core.campaigns.state import execution_state
from core.campaigns.states import CampaignStatus, ExecutionState
from core.commands import ending
from core.events import CommandEvent, CommandIssued, CommandRunning, ExecutionNotified
from core.store import EventStore
from tests.harness import Mesh
from tests.mahavishnu.campaigns.fleet import create, device_ids, fleet, history, spec, view_of
from tests.waiting import eventually_async

KILLS = 20
RATE = 60


def _start(mesh: Mesh, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mahavishnu.campaigns.standalone", str(mesh.home.root), str(mesh.port)],
            stdout=out,
            stderr=out,
        )


async def test_an_orchestrator_killed_20_times_sends_each_attempt_once_and_its_counts_match_the_devices(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    devices = device_ids(40, failing=6, fail_pct=15)
    rng = random.Random()
    log = tmp_path / "orchestrator.log"
    async with fleet(mesh, store, tmp_path, devices):
        campaign = await create(
            store,
            spec(
                {
                    "name": "crash",
                    "document": {"command": {"name": "simulate.work", "args": {"fail_pct": 15, "seconds": 0.3}}},
                    "targets": {"devices": devices},
                    "pace": {"maximum_per_minute": RATE},
                    "execution": {"retries": {"failed": 1}},
                }
            ),
        )
        for _ in range(KILLS):
            before = await store.last_sequence("CAMPAIGNS")
            process = _start(mesh, log)
            try:

                async def acted(before: int = before) -> bool:
                    return await store.last_sequence("CAMPAIGNS") > before

                await eventually_async(acted, timeout=60, what="the restarted orchestrator to record something")
                # a random point of its work, from its first decision to half a second later
                await asyncio.sleep(rng.uniform(0, 0.5))
            finally:
                process.kill()
                process.wait()
        process = _start(mesh, log)
        try:

            async def finished() -> bool:
                return (await view_of(store, campaign)).status == CampaignStatus.FINISHED

            await eventually_async(finished, timeout=120, what="the campaign to finish after the restarts")
        finally:
            process.terminate()
            process.wait()

    events = [event for _, event in await history(store, campaign)]
    notified = [e for e in events if isinstance(e, ExecutionNotified)]
    # every attempt was sent once, and only attempts that were notified
    sent: Counter[str] = Counter()
    for device in devices:
        async for stored in store.read(subjects.device_commands(device)):
            if isinstance(stored.event, CommandIssued):
                sent[stored.event.command_id] += 1
    assert set(sent) == {e.command_id for e in notified}
    assert max(sent.values()) == 1
    # ... and ran once: the devices' reports
    reports: list[CommandEvent] = []
    for device in devices:
        async for stored in store.read(subjects.device_event(device, "command")):
            if isinstance(stored.event, CommandEvent):
                reports.append(stored.event)
    runs = Counter(e.command_id for e in reports if isinstance(e, CommandRunning))
    assert max(runs.values()) == 1
    # the counts folded from the stream are what the devices reported, attempt by attempt
    endings = {e.command_id: ending(e) for e in reports if ending(e) is not None}
    view = await view_of(store, campaign)
    for execution in view.executions.values():
        reported = endings[execution.command_id]
        assert reported is not None
        assert execution.state == execution_state(reported), execution
    counts = view.counts()
    assert counts[ExecutionState.SUCCEEDED.value] == len(devices) - 6
    assert counts[ExecutionState.FAILED.value] == 6
    assert len(notified) == len(devices) + 6  # each failing device retried once
    # the pace held across the restarts
    times = sorted(e.occurred_at for e in notified)
    for index, moment in enumerate(times):
        assert len([t for t in times[: index + 1] if moment - t < timedelta(seconds=60)]) <= RATE
