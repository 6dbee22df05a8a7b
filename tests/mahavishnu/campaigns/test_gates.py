"""Wave gates: the newest open wave's success and error gates, and what each leads to (pure)."""

from __future__ import annotations

from core.campaigns import ids
from core.campaigns.spec import CampaignSpec, CommandDocument, Document, GateAction, Targets, Wave
from core.campaigns.state import CampaignView, fold
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
from mahavishnu.campaigns.gates import GateDecision, decide

CAMPAIGN = "cp-00000000beef"
CANARY = [f"c{i}" for i in range(10)]
REST = [f"r{i}" for i in range(30)]


def spec(*waves: Wave) -> CampaignSpec:
    return CampaignSpec(
        name="ping",
        document=Document(command=CommandDocument(name="ping")),
        targets=Targets(tags={"role": "pump"}),
        waves=list(waves),
    )


def begun(campaign: CampaignSpec) -> list[Event]:
    return [
        CampaignCreated(campaign_id=CAMPAIGN, spec=campaign, actor="alice"),
        CampaignStarted(campaign_id=CAMPAIGN),
        CampaignTargeted(campaign_id=CAMPAIGN, devices=CANARY, wave=0),
        CampaignTargeted(campaign_id=CAMPAIGN, devices=REST, wave=1),
        CampaignWaveOpened(campaign_id=CAMPAIGN, wave=0),
    ]


def ran(devices: list[str], state: ExecutionState, wave: int = 0) -> list[Event]:
    events: list[Event] = []
    for device in devices:
        events.append(
            ExecutionNotified(
                campaign_id=CAMPAIGN,
                device_id=device,
                attempt=1,
                command_id=ids.command_id(CAMPAIGN, device, 1),
                wave=wave,
            )
        )
        events.append(ExecutionChanged(campaign_id=CAMPAIGN, device_id=device, attempt=1, state=state))
    return events


def view(events: list[Event]) -> CampaignView:
    folded = fold(events)
    assert folded is not None
    return folded


CANARY_GATES = Wave(name="canary", percent=25, success_threshold_pct=80, error_threshold_pct=20)
REST_WAVE = Wave(name="rest", percent=75)


def test_no_wave_opens_before_its_predecessors_success_gate_is_met() -> None:
    events = begun(spec(CANARY_GATES, REST_WAVE))
    assert decide(view(events)) is None
    assert decide(view([*events, *ran(CANARY[:7], ExecutionState.SUCCEEDED)])) is None  # 70% < 80%
    decision = decide(view([*events, *ran(CANARY[:8], ExecutionState.SUCCEEDED)]))
    assert decision == GateDecision(
        GateAction.NEXT_WAVE, 0, "waves[0].success: 8 of 10 in wave canary succeeded (80.0% >= 80%)"
    )
    assert decision.name == "waves[0].success"


def test_the_error_gate_comes_first_and_pauses_or_aborts() -> None:
    events = [*begun(spec(CANARY_GATES, REST_WAVE)), *ran(CANARY[:8], ExecutionState.SUCCEEDED)]
    failing = [*events, *ran(CANARY[8:], ExecutionState.TIMED_OUT)]
    decision = decide(view(failing))
    assert decision is not None
    assert (decision.action, decision.wave, decision.name) == (GateAction.PAUSE, 0, "waves[0].error")
    assert decision.text.endswith("2 of 10 in wave canary failed, were rejected or timed out (20.0% >= 20%)")
    aborting = spec(Wave(percent=25, error_threshold_pct=20, on_error=GateAction.ABORT), REST_WAVE)
    failing[0] = CampaignCreated(campaign_id=CAMPAIGN, spec=aborting, actor="alice")
    decision = decide(view(failing))
    assert decision is not None and decision.action == GateAction.ABORT


def test_a_resumed_error_gate_does_not_pause_again_and_the_success_gate_then_opens_the_next_wave() -> None:
    failing = [
        *begun(spec(CANARY_GATES, REST_WAVE)),
        *ran(CANARY[:3], ExecutionState.FAILED),
    ]
    paused = decide(view(failing))
    assert paused is not None and paused.action == GateAction.PAUSE
    failing += [
        CampaignPaused(campaign_id=CAMPAIGN, reason="gate", rule=paused.text),
        CampaignResumed(campaign_id=CAMPAIGN, actor="alice"),
    ]
    resumed = view(failing)
    assert resumed.status == CampaignStatus.RUNNING
    assert decide(resumed) is None
    # The rest of the canary succeeds: 7 of 10 is not 80%; make the wave's bar 70% and it opens.
    lower = spec(Wave(name="canary", percent=25, success_threshold_pct=70, error_threshold_pct=20), REST_WAVE)
    failing[0] = CampaignCreated(campaign_id=CAMPAIGN, spec=lower, actor="alice")
    decision = decide(view([*failing, *ran(CANARY[3:], ExecutionState.SUCCEEDED)]))
    assert decision is not None and decision.action == GateAction.NEXT_WAVE


def test_a_success_gate_that_pauses_waits_for_the_operator() -> None:
    pausing = Wave(name="canary", percent=25, success_threshold_pct=50, on_success=GateAction.PAUSE)
    events = [*begun(spec(pausing, REST_WAVE)), *ran(CANARY[:5], ExecutionState.SUCCEEDED)]
    decision = decide(view(events))
    assert decision is not None and decision.action == GateAction.PAUSE
    # Paused: no decision; resumed (instead of next-wave): the gate stays answered.
    events.append(CampaignPaused(campaign_id=CAMPAIGN, reason="gate", rule=decision.text))
    assert decide(view(events)) is None
    events.append(CampaignResumed(campaign_id=CAMPAIGN, actor="alice"))
    assert decide(view(events)) is None


def test_only_the_newest_open_wave_is_asked_and_the_last_has_no_next() -> None:
    events = [
        *begun(spec(CANARY_GATES, REST_WAVE)),
        *ran(CANARY, ExecutionState.SUCCEEDED),
        CampaignWaveOpened(campaign_id=CAMPAIGN, wave=1),
    ]
    assert decide(view(events)) is None
    assert decide(view([*events, *ran(REST, ExecutionState.SUCCEEDED, wave=1)])) is None


def test_an_empty_wave_passes_its_success_gate_at_once() -> None:
    events = begun(spec(CANARY_GATES, REST_WAVE, Wave(name="last", percent=0)))
    events[2] = CampaignTargeted(campaign_id=CAMPAIGN, devices=[], wave=0)
    decision = decide(view(events))
    assert decision is not None and decision.text == "waves[0].success: 0 of 0 in wave canary succeeded (100.0% >= 80%)"


def test_a_campaign_without_waves_has_no_gates() -> None:
    events = begun(spec())
    assert decide(view([*events[:3], *ran(CANARY, ExecutionState.FAILED)])) is None
