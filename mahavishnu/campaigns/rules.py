"""Which of a campaign's abort rules fired, from its counts per execution state (pure).

A rule `{failure_type, threshold_pct, min_executed}` fires once at least `min_executed`
executions ran to an outcome (core.campaigns.states.EXECUTED: succeeded, failed, timed_out,
rejected; removed and canceled ones did not run) and at least `threshold_pct` of those
ended as `failure_type` (`any`: failed, rejected or timed out). At least one such failure
is needed, so a 0% threshold means "the first failure", never "before anything ran".

The first rule that fires, in the file's order, is the one reported: its text names it
("abort[0]") before the numbers, so an operator finds it in the campaign file. The name
before the colon is what a campaign remembers once an operator resumed past the rule (a
rule whose action is pause): `acknowledged` names those, and they do not fire again.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from core.campaigns.spec import AbortRule, FailureType
from core.campaigns.states import EXECUTED, ExecutionState

_FAILURES: dict[FailureType, tuple[ExecutionState, ...]] = {
    FailureType.FAILED: (ExecutionState.FAILED,),
    FailureType.REJECTED: (ExecutionState.REJECTED,),
    FailureType.TIMED_OUT: (ExecutionState.TIMED_OUT,),
    FailureType.ANY: (ExecutionState.FAILED, ExecutionState.REJECTED, ExecutionState.TIMED_OUT),
}


@dataclass(frozen=True)
class Fired:
    """Rule `index` of the campaign's abort list fired; `text` says so in one line."""

    index: int
    rule: AbortRule
    text: str

    @property
    def name(self) -> str:
        return name(self.index)


def name(index: int) -> str:
    """How rule `index` is named: as the campaign file's `[[abort]]` list is counted, from 0."""
    return f"abort[{index}]"


def fired(rules: Sequence[AbortRule], counts: Mapping[str, int], *, acknowledged: Collection[str] = ()) -> Fired | None:
    """The first rule that fires on `counts` (CampaignView.counts()), or None.

    `acknowledged`: names of rules an operator resumed past (CampaignView.acknowledged),
    which do not fire again.
    """
    executed = sum(counts.get(state.value, 0) for state in EXECUTED)
    for index, rule in enumerate(rules):
        if name(index) in acknowledged or executed == 0 or executed < rule.min_executed:
            continue
        failures = sum(counts.get(state.value, 0) for state in _FAILURES[rule.failure_type])
        percent = 100.0 * failures / executed
        if failures and percent >= rule.threshold_pct:
            text = (
                f"{name(index)}: {rule.failure_type.value} {percent:.1f}% >= {rule.threshold_pct:g}% "
                f"of {executed} executed"
            )
            return Fired(index, rule, text)
    return None
