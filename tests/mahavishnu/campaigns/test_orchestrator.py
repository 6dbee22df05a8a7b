"""The orchestrator against a real mesh and real (simulated) agents: pace, abort, timeouts, retries."""

from __future__ import annotations

from datetime import timedelta
from itertools import pairwise
from pathlib import Path

from core import subjects
from core.campaigns import ids
from core.campaigns.state import apply
from core.campaigns.states import CampaignStatus, ExecutionState
from core.events import (
    CampaignAborted,
    CampaignFinished,
    CampaignStarted,
    CampaignTargeted,
    CampaignWaveOpened,
    CommandIssued,
    ExecutionChanged,
    ExecutionNotified,
)
from core.metrics import new_registry
from core.store import EventStore
from mahavishnu.campaigns import pace, rules
from mahavishnu.control import commands
from tests.harness import Mesh
from tests.mahavishnu.campaigns.fleet import create, device_ids, fleet, history, orchestrator, spec, view_of
from tests.waiting import eventually, eventually_async

RATE = 20  # per minute: one notification every 3 s, so the test runs in well under a minute


async def _until(store: EventStore, campaign_id: str, *statuses: CampaignStatus, timeout: float = 90) -> None:
    async def reached() -> bool:
        return (await view_of(store, campaign_id)).status in statuses

    await eventually_async(reached, timeout=timeout, what=f"campaign {campaign_id} to be {statuses}")


async def test_no_60_s_window_holds_more_notifications_than_the_rate(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    devices = device_ids(5, failing=0, fail_pct=0)
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        campaign = await create(
            store,
            spec(
                {
                    "name": "rate",
                    "document": {"command": {"name": "simulate.work", "args": {}}},
                    "targets": {"devices": devices},
                    "pace": {"maximum_per_minute": RATE},
                }
            ),
        )
        await _until(store, campaign, CampaignStatus.FINISHED)
    times = sorted(e.occurred_at for _, e in await history(store, campaign) if isinstance(e, ExecutionNotified))
    assert len(times) == len(devices)
    for index, moment in enumerate(times):
        window = [t for t in times[: index + 1] if moment - t < timedelta(seconds=60)]
        assert len(window) <= RATE
    # spread over the minute (one interval of 60/RATE s apart), not sent at once
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(times)]
    assert min(gaps) >= 60 / RATE - 0.1, gaps
    view = await view_of(store, campaign)
    assert view.counts()[ExecutionState.SUCCEEDED.value] == len(devices)


async def test_an_abort_rule_fires_at_its_crossing_outcome_and_no_device_is_notified_after_it(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    # 15% of the devices fail (6 of 40), against a rule of 10% once 20 ran
    devices = device_ids(40, failing=6, fail_pct=15)
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        campaign = await create(
            store,
            spec(
                {
                    "name": "abort",
                    "document": {"command": {"name": "simulate.work", "args": {"fail_pct": 15, "seconds": 0.2}}},
                    "targets": {"devices": devices},
                    "pace": {"maximum_per_minute": 600},
                    "abort": [{"failure_type": "failed", "threshold_pct": 10, "min_executed": 20}],
                }
            ),
        )
        await _until(store, campaign, CampaignStatus.ABORTED)
    events = await history(store, campaign)
    [(aborted_at, aborted)] = [(seq, e) for seq, e in events if isinstance(e, CampaignAborted)]
    # the outcome that crossed the threshold, found by folding the stream as it was stored
    view = await view_of(store, campaign)
    crossing = None
    replay = None
    for _, event in events:
        replay = apply(replay, event)
        changed = isinstance(event, ExecutionChanged) and replay is not None
        if changed and rules.fired(view.spec.abort, replay.counts()) is not None:
            crossing = event
            break
    assert crossing is not None
    assert (aborted.occurred_at - crossing.occurred_at).total_seconds() <= 2.0
    assert aborted.rule.startswith("abort[0]: failed")
    assert not [e for seq, e in events if seq > aborted_at and isinstance(e, ExecutionNotified) and not e.rollback]
    assert view.status == CampaignStatus.ABORTED
    assert view.counts()["pending"] > 0  # it stopped before reaching every device


async def test_an_execution_past_its_in_progress_timeout_is_timed_out_within_a_second_and_retried(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    devices = device_ids(2, failing=0, fail_pct=0)
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        campaign = await create(
            store,
            spec(
                {
                    "name": "timeouts",
                    "document": {"command": {"name": "simulate.work", "args": {"seconds": 30}}},
                    "targets": {"devices": devices},
                    "execution": {"in_progress_timeout_s": 1.0, "retries": {"timed_out": 1}},
                }
            ),
        )
        await _until(store, campaign, CampaignStatus.FINISHED)
    events = [e for _, e in await history(store, campaign)]
    notified = {(e.device_id, e.attempt): e.occurred_at for e in events if isinstance(e, ExecutionNotified)}
    timed_out = [e for e in events if isinstance(e, ExecutionChanged) and e.state == ExecutionState.TIMED_OUT]
    assert sorted(notified) == sorted((d, a) for d in devices for a in (1, 2))  # each timed out, then retried once
    assert len(timed_out) == 4
    for event in timed_out:
        late = (event.occurred_at - notified[(event.device_id, event.attempt)]).total_seconds()
        assert 1.0 <= late <= 2.0, late
    assert any(isinstance(e, CampaignFinished) for e in events)


async def test_a_resumed_orchestrator_sends_a_notified_attempt_only_if_it_is_not_on_commands(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    # As a crash leaves it: both attempts notified; `sent` also sent, `unsent` not (killed between the two).
    sent, unsent = device_ids(2, failing=0, fail_pct=0)
    document = {"command": {"name": "simulate.work", "args": {}}}
    campaign = await create(
        store, spec({"name": "resume", "document": document, "targets": {"devices": [sent, unsent]}})
    )
    await store.append(CampaignTargeted(campaign_id=campaign, devices=[sent, unsent]))
    await store.append(CampaignStarted(campaign_id=campaign))
    await store.append(CampaignWaveOpened(campaign_id=campaign, wave=0))
    for device in (sent, unsent):
        command = ids.command_id(campaign, device, 1)
        await store.append(ExecutionNotified(campaign_id=campaign, device_id=device, attempt=1, command_id=command))
    await commands.send(
        store,
        sent,
        "simulate.work",
        {},
        ttl_s=60,
        timeout_s=10,
        actor="tester",
        command_id=ids.command_id(campaign, sent, 1),
    )
    async with fleet(mesh, store, tmp_path, [sent, unsent]), orchestrator(mesh):
        await _until(store, campaign, CampaignStatus.FINISHED)
    for device in (sent, unsent):
        issued = [s.event async for s in store.read(subjects.device_commands(device))]
        assert [e.command_id for e in issued if isinstance(e, CommandIssued)] == [ids.command_id(campaign, device, 1)]
    assert (await view_of(store, campaign)).counts()[ExecutionState.SUCCEEDED.value] == 2


async def test_a_report_of_a_campaign_it_was_not_part_of_is_ignored_and_counted(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    member, stranger = device_ids(2, failing=0, fail_pct=0)
    campaign = await create(
        store,
        spec(
            {
                "name": "foreign",
                "document": {"command": {"name": "simulate.work", "args": {"seconds": 5}}},
                "targets": {"devices": [member]},
            }
        ),
    )
    registry = new_registry(process_metrics=False)
    async with fleet(mesh, store, tmp_path, [member, stranger]), orchestrator(mesh, registry=registry):
        await _until(store, campaign, CampaignStatus.RUNNING)
        # the stranger is sent commands with ids shaped like the campaign's, as if it were part of it
        for command_id in (ids.command_id(campaign, stranger, 1), ids.command_id(campaign, stranger, 2)):
            await commands.send(
                store, stranger, "ping", {}, ttl_s=60, timeout_s=5, actor="tester", command_id=command_id
            )

        def counted() -> bool:
            return (registry.get_sample_value("mahavishnu_campaign_foreign_reports_total") or 0) >= 6

        await eventually(counted, timeout=30, what="the stranger's reports to be counted as foreign")
        await _until(store, campaign, CampaignStatus.FINISHED)
    view = await view_of(store, campaign)
    assert set(view.executions) == {member}
    assert view.counts()[ExecutionState.SUCCEEDED.value] == 1


async def test_an_exponential_rate_steps_up_as_its_devices_are_notified(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    devices = device_ids(6, failing=0, fail_pct=0)
    exponential = {"base_per_minute": 20, "increment_factor": 2, "number": 2, "increase_after": "notified"}
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        campaign = await create(
            store,
            spec(
                {
                    "name": "exponential",
                    "document": {"command": {"name": "simulate.work", "args": {}}},
                    "targets": {"devices": devices},
                    "pace": {"exponential": exponential},
                }
            ),
        )
        await _until(store, campaign, CampaignStatus.FINISHED)
    view = await view_of(store, campaign)
    times = sorted(e.occurred_at for _, e in await history(store, campaign) if isinstance(e, ExecutionNotified))
    # the k+1-th device waits one interval of the rate in force after k were notified: 20, 40, then 80 a minute
    for notified, (earlier, later) in enumerate(pairwise(times), start=1):
        interval = 60 / (pace.rate(view.spec.pace, notified=notified, succeeded=0) or 1)
        assert (later - earlier).total_seconds() >= interval - 0.1, (notified, interval)
    assert (times[-1] - times[-2]).total_seconds() < 60 / 20  # faster than the base rate by the end
