"""Abort rules: which fires, on what counts, and how it says so (pure)."""

from __future__ import annotations

from core.campaigns.spec import AbortRule, FailureType, RuleAction
from mahavishnu.campaigns.rules import fired


def counts(**states: int) -> dict[str, int]:
    return {"pending": 0, "queued": 0, "in_progress": 0, **states}


TEN_PERCENT = AbortRule(failure_type=FailureType.FAILED, threshold_pct=10, min_executed=100)


def test_fifteen_percent_failures_fire_a_ten_percent_rule_once_enough_ran() -> None:
    assert fired([TEN_PERCENT], counts(succeeded=84, failed=15)) is None  # 99 executed: not yet
    result = fired([TEN_PERCENT], counts(succeeded=89, failed=16))
    assert result is not None
    assert (result.index, result.rule, result.name) == (0, TEN_PERCENT, "abort[0]")
    assert result.text == "abort[0]: failed 15.2% >= 10% of 105 executed"


def test_only_outcomes_count_as_executed() -> None:
    # 20 failed of 100 outcomes; the queued, running, removed and canceled ones are no outcome.
    many = counts(succeeded=80, failed=20, queued=500, in_progress=50, removed=30, canceled=40)
    result = fired([AbortRule(failure_type=FailureType.FAILED, threshold_pct=20, min_executed=100)], many)
    assert result is not None and result.text.endswith("20.0% >= 20% of 100 executed")
    assert fired([AbortRule(failure_type=FailureType.FAILED, threshold_pct=21)], many) is None


def test_each_failure_type_counts_its_own_and_any_counts_them_all() -> None:
    mixed = counts(succeeded=70, failed=10, rejected=10, timed_out=10)
    for failure in (FailureType.FAILED, FailureType.REJECTED, FailureType.TIMED_OUT):
        assert fired([AbortRule(failure_type=failure, threshold_pct=10)], mixed) is not None
        assert fired([AbortRule(failure_type=failure, threshold_pct=11)], mixed) is None
    result = fired([AbortRule(failure_type=FailureType.ANY, threshold_pct=30)], mixed)
    assert result is not None and result.text == "abort[0]: any 30.0% >= 30% of 100 executed"


def test_the_first_rule_that_fires_is_reported_and_acknowledged_ones_are_skipped() -> None:
    rules = [
        AbortRule(failure_type=FailureType.TIMED_OUT, threshold_pct=50),
        AbortRule(failure_type=FailureType.FAILED, threshold_pct=5, action=RuleAction.PAUSE),
        AbortRule(failure_type=FailureType.ANY, threshold_pct=5, action=RuleAction.ROLLBACK),
    ]
    now = counts(succeeded=90, failed=10)
    first = fired(rules, now)
    assert first is not None and first.index == 1
    after_resume = fired(rules, now, acknowledged={"abort[1]"})
    assert after_resume is not None and after_resume.index == 2


def test_a_zero_threshold_waits_for_a_first_failure() -> None:
    rule = AbortRule(failure_type=FailureType.FAILED, threshold_pct=0)
    assert fired([rule], counts()) is None
    assert fired([rule], counts(succeeded=5)) is None
    assert fired([rule], counts(succeeded=5, failed=1)) is not None
