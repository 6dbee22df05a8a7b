"""A campaign's life under the orchestrator, on a real mesh with simulated agents: waves and their gates,
operators' pause, resume and cancel, the schedule's windows and end."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from core import subjects
from core.campaigns.spec import CampaignSpec
from core.campaigns.state import CampaignView, apply
from core.campaigns.states import CampaignStatus, ExecutionState
from core.events import (
    CampaignCanceled,
    CampaignPaused,
    CampaignResumed,
    CampaignWaveOpened,
    CommandIssued,
    DesiredStateSet,
    Event,
    ExecutionChanged,
    ExecutionNotified,
    ReportedState,
)
from core.events.base import utc_now
from core.store import EventStore
from edge.simulate import fails
from mahavishnu.campaigns import control, targets
from tests.harness import Mesh
from tests.mahavishnu.campaigns.fleet import create, device_ids, fleet, history, orchestrator, spec, view_of
from tests.waiting import eventually_async

WORK = {"command": {"name": "simulate.work", "args": {"fail_pct": 50, "seconds": 0.1}}}


async def _until(store: EventStore, campaign_id: str, *statuses: CampaignStatus, timeout: float = 60) -> CampaignView:
    found: list[CampaignView] = []

    async def reached() -> bool:
        found[:] = [await view_of(store, campaign_id)]
        return found[0].status in statuses

    await eventually_async(reached, timeout=timeout, what=f"campaign {campaign_id} to be {statuses}")
    return found[0]


def _seq_of(events: list[tuple[int, Event]], kind: type[Event]) -> list[int]:
    return [seq for seq, event in events if isinstance(event, kind)]


def _waved(campaign: dict[str, Any]) -> tuple[CampaignSpec, list[str]]:
    """Six devices such that the one that fails simulate.work (at 50%) falls in the second wave of `campaign`."""
    while True:
        devices = device_ids(6, failing=1, fail_pct=50)
        campaign = {**campaign, "targets": {"devices": devices}}
        waves = targets.waves_of(devices, spec(campaign), {})
        if all(waves[d] == 1 for d in devices if fails(d, 50)) and waves[devices[0]] == 1:
            return spec(campaign), devices


async def test_no_wave_opens_before_its_gate_the_error_gate_pauses_and_resume_finishes(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    campaign_spec, devices = _waved(
        {
            "name": "waves",
            "document": WORK,
            "pace": {"maximum_per_minute": 60},
            "waves": [
                {"percent": 50, "success_threshold_pct": 100},
                {"error_threshold_pct": 10, "on_error": "pause"},
            ],
        }
    )
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        campaign = await create(store, campaign_spec)
        paused = await _until(store, campaign, CampaignStatus.PAUSED)
        assert paused.rule.startswith("waves[1].error"), paused.rule
        await control.resume(store, campaign, actor="tester")
        await _until(store, campaign, CampaignStatus.FINISHED)
    events = await history(store, campaign)
    # wave 1 opened once wave 0 all succeeded (its gate: 100%), and none of it was notified before
    [opened] = [seq for seq, e in events if isinstance(e, CampaignWaveOpened) and e.wave == 1]
    before: CampaignView | None = None
    for seq, event in events:
        if seq >= opened:
            break
        before = apply(before, event)
    assert before is not None
    assert before.wave_counts()[0][ExecutionState.SUCCEEDED.value] == before.wave_counts()[0]["targets"] == 3
    assert not [seq for seq, e in events if isinstance(e, ExecutionNotified) and e.wave == 1 and seq < opened]
    # nothing notified while paused
    [pause], [resume] = _seq_of(events, CampaignPaused), _seq_of(events, CampaignResumed)
    assert not [seq for seq in _seq_of(events, ExecutionNotified) if pause < seq < resume]
    counts = (await view_of(store, campaign)).counts()
    assert (counts["succeeded"], counts["failed"], counts["pending"]) == (5, 1, 0)


async def test_an_operators_pause_stops_notifying_and_cancel_cancels_what_devices_have_not_taken(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    devices = device_ids(6, failing=0, fail_pct=0)
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        campaign = await create(
            store,
            spec(
                {
                    "name": "cancel",
                    "document": {"command": {"name": "simulate.work", "args": {}}},
                    "targets": {"devices": devices},
                    "pace": {"maximum_per_minute": 30},
                }
            ),
        )

        async def one_succeeded() -> bool:
            return (await view_of(store, campaign)).counts()["succeeded"] >= 1

        await eventually_async(one_succeeded, timeout=30, what="a first execution to succeed")
        await control.pause(store, campaign, actor="tester")
        await control.cancel(store, campaign, actor="tester")
        view = await _until(store, campaign, CampaignStatus.CANCELED)
    events = await history(store, campaign)
    [canceled] = _seq_of(events, CampaignCanceled)
    [paused] = _seq_of(events, CampaignPaused)
    assert not [seq for seq in _seq_of(events, ExecutionNotified) if seq > paused]
    assert view.counts()["pending"] > 0
    assert canceled > paused


async def test_a_forced_cancel_also_ends_the_executions_in_progress(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    devices = device_ids(3, failing=0, fail_pct=0)
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        campaign = await create(
            store,
            spec(
                {
                    "name": "force",
                    "document": {"command": {"name": "simulate.work", "args": {"seconds": 60}}},
                    "targets": {"devices": devices},
                }
            ),
        )

        async def all_in_progress() -> bool:
            return (await view_of(store, campaign)).counts()["in_progress"] == 3

        await eventually_async(all_in_progress, timeout=30, what="every execution to be in progress")
        await control.cancel(store, campaign, actor="tester", force=True)

        async def all_canceled() -> bool:
            return (await view_of(store, campaign)).counts()["canceled"] == 3

        await eventually_async(all_canceled, timeout=30, what="the executions in progress to be canceled")
    changes = [e for _, e in await history(store, campaign) if isinstance(e, ExecutionChanged)]
    assert {e.detail for e in changes if e.state == ExecutionState.CANCELED} == {
        "canceled by force; its device had already taken it"
    }


async def test_nothing_is_notified_outside_a_maintenance_window_and_the_schedules_end_cancels(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    devices = device_ids(4, failing=0, fail_pct=0)
    now = utc_now()
    # a window that opens for a minute at midnight on another day of the month than today: closed now
    closed = [{"cron": f"0 0 {2 if now.day == 1 else 1} * *", "duration_s": 60.0}]
    ends = now + timedelta(seconds=4)
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        outside = await create(
            store,
            spec(
                {
                    "name": "outside",
                    "document": {"command": {"name": "simulate.work", "args": {}}},
                    "targets": {"devices": devices},
                    "schedule": {"windows": closed},
                }
            ),
        )
        ending = await create(
            store,
            spec(
                {
                    "name": "ending",
                    "document": {"command": {"name": "simulate.work", "args": {}}},
                    "targets": {"devices": devices},
                    "pace": {"maximum_per_minute": 30},
                    "schedule": {
                        "end": ends.isoformat(),
                        "at_end": "cancel",
                        "windows": [{"cron": "* * * * *", "duration_s": 3600.0}],
                    },
                }
            ),
        )
        view = await _until(store, ending, CampaignStatus.CANCELED)
    assert view.reason == "the schedule ended"
    events = await history(store, ending)
    [canceled] = _seq_of(events, CampaignCanceled)
    notified = [e for seq, e in events if isinstance(e, ExecutionNotified)]
    assert notified and all(e.occurred_at < ends for e in notified)
    assert not [seq for seq in _seq_of(events, ExecutionNotified) if seq > canceled]
    assert view.counts()["pending"] > 0
    # the campaign whose window never opened was never even started, though created first
    untouched = await view_of(store, outside)
    assert untouched.status == CampaignStatus.CREATED and not untouched.executions


async def test_a_rollback_rule_re_applies_the_previous_desired_state_to_the_devices_that_succeeded(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    online = device_ids(3, failing=0, fail_pct=0)
    offline = device_ids(2, failing=0, fail_pct=0)  # never run an agent: their executions time out
    for device in online + offline:
        await store.append(DesiredStateSet(device_id=device, state={"mode": "eco", "rate": 5}, version=1))
    async with fleet(mesh, store, tmp_path, online), orchestrator(mesh):
        campaign = await create(
            store,
            spec(
                {
                    "name": "rollback",
                    "document": {"desired": {"mode": "turbo"}},
                    "targets": {"devices": online + offline},
                    "execution": {"in_progress_timeout_s": 1.0},
                    "abort": [
                        {"failure_type": "timed_out", "threshold_pct": 30, "min_executed": 5, "action": "rollback"}
                    ],
                }
            ),
        )

        async def rolled_back() -> bool:
            view = await view_of(store, campaign)
            done = [e for d in online if (e := view.executions.get(d)) is not None and e.rollback]
            return len(done) == 3 and all(e.state == ExecutionState.SUCCEEDED for e in done)

        await eventually_async(rolled_back, timeout=60, what="the devices that succeeded to be rolled back")
        for device in online:

            async def restored(device: str = device) -> bool:
                reported = await store.last_event(subjects.device_event(device, "reported"))
                return isinstance(reported, ReportedState) and reported.state.get("mode") == "eco"

            await eventually_async(restored, timeout=30, what=f"{device} to report its earlier mode")
    view = await view_of(store, campaign)
    assert view.status == CampaignStatus.ABORTED
    assert {d: view.executions[d].state for d in offline} == dict.fromkeys(offline, ExecutionState.TIMED_OUT)
    for device in online:
        desired = await store.last_event(subjects.device_event(device, "desired"))
        assert isinstance(desired, DesiredStateSet) and desired.state == {"mode": "eco", "rate": 5}
    # each device ran the campaign's one command per attempt: config.apply, once, then its rollback
    for device in online:
        issued = [s.event async for s in store.read(subjects.device_commands(device))]
        assert [(e.name, e.args) for e in issued if isinstance(e, CommandIssued)] == [
            ("config.apply", {"values": {"mode": "turbo"}}),
            ("config.apply", {"values": {"mode": "eco"}}),
        ]


async def test_a_campaign_that_cannot_start_holds_up_no_other(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    # This mesh runs no query service: a filter cannot be asked, so that campaign waits (and says why in the log).
    devices = device_ids(2, failing=0, fail_pct=0)
    work = {"command": {"name": "simulate.work", "args": {}}}
    async with fleet(mesh, store, tmp_path, devices), orchestrator(mesh):
        stuck = await create(store, spec({"name": "filter", "document": work, "targets": {"tags": {"role": "x"}}}))
        free = await create(store, spec({"name": "listed", "document": work, "targets": {"devices": devices}}))
        await _until(store, free, CampaignStatus.FINISHED)
    assert (await view_of(store, stuck)).status == CampaignStatus.CREATED
