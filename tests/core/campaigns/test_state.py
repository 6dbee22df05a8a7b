"""The fold of a campaign's events, and the ids of its commands (pure)."""

from __future__ import annotations

from core.campaigns import ids
from core.campaigns.spec import CampaignSpec, CommandDocument, Document, Targets, Wave
from core.campaigns.state import fold
from core.campaigns.states import CampaignStatus, ExecutionState
from core.events import (
    CampaignCreated,
    CampaignPaused,
    CampaignResumed,
    CampaignStarted,
    CampaignTargeted,
    CampaignWaveOpened,
    Event,
    ExecutionChanged,
    ExecutionNotified,
)

CAMPAIGN = "cp-00000000abcd"
SPEC = CampaignSpec(
    name="ping-all",
    document=Document(command=CommandDocument(name="ping")),
    targets=Targets(devices=["a", "b", "c"]),
    waves=[Wave(name="canary", percent=34), Wave(name="rest", percent=66)],
)


def started() -> list[Event]:
    return [
        CampaignCreated(campaign_id=CAMPAIGN, spec=SPEC, actor="alice"),
        CampaignStarted(campaign_id=CAMPAIGN),
        CampaignTargeted(campaign_id=CAMPAIGN, devices=["a"], wave=0),
        CampaignTargeted(campaign_id=CAMPAIGN, devices=["b", "c"], wave=1),
        CampaignWaveOpened(campaign_id=CAMPAIGN, wave=0),
    ]


def notified(device: str, attempt: int, wave: int = 0) -> ExecutionNotified:
    return ExecutionNotified(
        campaign_id=CAMPAIGN,
        device_id=device,
        attempt=attempt,
        command_id=ids.command_id(CAMPAIGN, device, attempt),
        wave=wave,
    )


def changed(device: str, attempt: int, state: ExecutionState) -> ExecutionChanged:
    return ExecutionChanged(campaign_id=CAMPAIGN, device_id=device, attempt=attempt, state=state)


def test_counts_per_state_and_per_wave() -> None:
    view = fold([*started(), notified("a", 1), changed("a", 1, ExecutionState.SUCCEEDED)])
    assert view is not None
    assert view.status == CampaignStatus.RUNNING
    assert view.counts()["pending"] == 2
    assert view.counts()["succeeded"] == 1
    canary, rest = view.wave_counts()
    assert (canary["name"], canary["open"], canary["targets"], canary["succeeded"]) == ("canary", True, 1, 1)
    assert (rest["open"], rest["targets"]) == (False, 2)


def test_a_retry_replaces_the_failed_attempt_and_late_news_of_the_old_one_is_ignored() -> None:
    view = fold(
        [
            *started(),
            notified("a", 1),
            changed("a", 1, ExecutionState.FAILED),
            notified("a", 2),
            changed("a", 1, ExecutionState.SUCCEEDED),  # the first attempt's late report
        ]
    )
    assert view is not None
    execution = view.executions["a"]
    assert (execution.attempt, execution.state) == (2, ExecutionState.QUEUED)
    assert view.notifications == 2


def test_the_first_ending_stays_and_events_read_twice_change_nothing() -> None:
    events = [*started(), notified("a", 1), changed("a", 1, ExecutionState.TIMED_OUT)]
    view = fold([*events, *events[-2:], changed("a", 1, ExecutionState.SUCCEEDED)])
    assert view is not None
    assert view.executions["a"].state == ExecutionState.TIMED_OUT
    assert view.notifications == 1


def test_pause_and_resume() -> None:
    paused = [*started(), CampaignPaused(campaign_id=CAMPAIGN, reason="gate", rule="waves[0].error")]
    view = fold(paused)
    assert view is not None
    assert (view.status, view.rule) == (CampaignStatus.PAUSED, "waves[0].error")
    view = fold([*paused, CampaignResumed(campaign_id=CAMPAIGN, actor="alice")])
    assert view is not None
    assert (view.status, view.rule) == (CampaignStatus.RUNNING, "")
    assert view.acknowledged == {"waves[0].error"}  # the gate it resumed past does not pause it again


def test_events_before_the_creation_are_ignored() -> None:
    assert fold([CampaignStarted(campaign_id=CAMPAIGN)]) is None


def test_command_ids_name_their_campaign_device_and_attempt() -> None:
    command = ids.command_id(CAMPAIGN, "a", 3)
    assert command == ids.command_id(CAMPAIGN, "a", 3)  # the same after a restart
    assert ids.campaign_of(command) == (CAMPAIGN, 3)
    assert ids.belongs(command, CAMPAIGN, "a")
    assert not ids.belongs(command, CAMPAIGN, "b")  # shaped like one of b's, but it is a's
    assert ids.campaign_of("c-0123456789abcdef0123") is None
    assert ids.is_campaign_id(ids.new_campaign_id())


def test_a_target_removed_before_it_was_notified_is_no_longer_pending() -> None:
    removed = ExecutionChanged(campaign_id=CAMPAIGN, device_id="b", attempt=0, state=ExecutionState.REMOVED)
    view = fold([*started(), removed])
    assert view is not None
    assert view.executions["b"].state == ExecutionState.REMOVED and view.executions["b"].ended
    assert (view.counts()["pending"], view.counts()["removed"]) == (2, 1)
    stranger = ExecutionChanged(campaign_id=CAMPAIGN, device_id="z", attempt=0, state=ExecutionState.REMOVED)
    assert "z" not in (fold([*started(), stranger]) or view).executions  # never a target: nothing to remove
