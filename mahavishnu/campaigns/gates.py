"""Whether a running campaign's newest open wave met its success or error gate, and what follows (pure).

A wave's gates count the wave's own targets (CampaignView.targets), by the state of each
device's latest attempt:

- error gate: `error_threshold_pct` of them ended failed, rejected or timed out, and at
  least one did; the action is `on_error` (pause or abort). It is asked first: a wave that
  both succeeded and failed enough is a wave that failed.
- success gate: `success_threshold_pct` of them succeeded; the action is `on_success`
  (open the next wave, or pause for an operator's `next-wave`). The last wave has no next
  one: its end is the campaign's end, which the orchestrator sees from the counts. A wave
  without targets (5% of 10 devices) meets its success gate at once.

Only the newest open wave is asked: older ones already passed their gates. A gate whose
pause an operator resumed past (CampaignView.acknowledged) does not pause again; its name
("waves[1].error") is the part of the text before the colon, as rules.py names its rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.campaigns.spec import GateAction
from core.campaigns.state import CampaignView
from core.campaigns.states import CampaignStatus, ExecutionState

_FAILURES = frozenset({ExecutionState.FAILED, ExecutionState.REJECTED, ExecutionState.TIMED_OUT})


@dataclass(frozen=True)
class GateDecision:
    """Do `action` because wave `wave`'s gate is met; `text` says which gate and the numbers, in one line."""

    action: GateAction
    wave: int
    text: str

    @property
    def name(self) -> str:
        return self.text.partition(":")[0]


def name(wave: int, gate: str) -> str:
    """How the `gate` ("success" or "error") of wave `wave` is named: as the file's `[[waves]]` are counted, from 0."""
    return f"waves[{wave}].{gate}"


def decide(view: CampaignView) -> GateDecision | None:
    """The gate decision for `view`'s newest open wave, or None (no waves, not running, no gate met)."""
    waves = view.spec.waves
    wave = view.waves_open - 1
    if view.status != CampaignStatus.RUNNING or not 0 <= wave < len(waves):
        return None
    spec = waves[wave]
    states = [execution.state for execution in view.executions.values() if execution.wave == wave]
    # Never fewer than the wave's executions: a percentage above 100 would read as nonsense.
    targets = max(sum(1 for target_wave in view.targets.values() if target_wave == wave), len(states))
    label = f" in wave {spec.name}" if spec.name else ""
    failures = sum(1 for state in states if state in _FAILURES)
    error = name(wave, "error")
    if (
        spec.error_threshold_pct is not None
        and failures
        and 100.0 * failures / targets >= spec.error_threshold_pct
        and not (spec.on_error == GateAction.PAUSE and error in view.acknowledged)
    ):
        text = (
            f"{error}: {failures} of {targets}{label} failed, were rejected or timed out "
            f"({100.0 * failures / targets:.1f}% >= {spec.error_threshold_pct:g}%)"
        )
        return GateDecision(spec.on_error, wave, text)
    succeeded = sum(1 for state in states if state == ExecutionState.SUCCEEDED)
    success = name(wave, "success")
    percent = 100.0 * succeeded / targets if targets else 100.0
    if (
        wave + 1 < len(waves)
        and percent >= spec.success_threshold_pct
        and not (spec.on_success == GateAction.PAUSE and success in view.acknowledged)
    ):
        text = (
            f"{success}: {succeeded} of {targets}{label} succeeded ({percent:.1f}% >= {spec.success_threshold_pct:g}%)"
        )
        return GateDecision(spec.on_success, wave, text)
    return None
