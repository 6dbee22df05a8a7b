"""What the orchestrator does next, decided from a campaign's folded view (pure)."""

from __future__ import annotations

from datetime import timedelta

import msgspec

from core.campaigns import ids
from core.campaigns.spec import CampaignSpec, RuleAction
from core.campaigns.state import CampaignView, fold
from core.campaigns.states import ExecutionState
from core.commands.lifecycle import CommandState
from core.events import (
    CampaignAborted,
    CampaignCreated,
    CampaignPaused,
    CampaignStarted,
    CampaignTargeted,
    CampaignWaveOpened,
    Event,
    ExecutionChanged,
    ExecutionNotified,
)
from mahavishnu.campaigns import plan
from mahavishnu.campaigns.plan import Attempt, Outcome

CAMPAIGN = "cp-00000000abcd"


def _spec(**extra: object) -> CampaignSpec:
    data = {
        "name": "plan",
        "document": {"command": {"name": "ping"}},
        "targets": {"devices": ["a", "b", "c", "d"]},
        "waves": [{"percent": 50}, {"percent": 50}],
        **extra,
    }
    return msgspec.convert(data, CampaignSpec)


def _view(*events: Event, spec: CampaignSpec | None = None) -> CampaignView:
    view = fold(
        [
            CampaignCreated(campaign_id=CAMPAIGN, spec=spec or _spec(), actor="alice"),
            CampaignTargeted(campaign_id=CAMPAIGN, devices=["a", "b"], wave=0),
            CampaignTargeted(campaign_id=CAMPAIGN, devices=["c", "d"], wave=1),
            CampaignStarted(campaign_id=CAMPAIGN),
            CampaignWaveOpened(campaign_id=CAMPAIGN, wave=0),
            *events,
        ]
    )
    assert view is not None
    return view


def _notified(device: str, attempt: int = 1, wave: int = 0, *, rollback: bool = False) -> ExecutionNotified:
    command = ids.command_id(CAMPAIGN, device, attempt)
    return ExecutionNotified(
        campaign_id=CAMPAIGN, device_id=device, attempt=attempt, command_id=command, wave=wave, rollback=rollback
    )


def _changed(device: str, state: ExecutionState, attempt: int = 1, *, rollback: bool = False) -> ExecutionChanged:
    return ExecutionChanged(campaign_id=CAMPAIGN, device_id=device, attempt=attempt, state=state, rollback=rollback)


def test_only_the_open_waves_pending_targets_are_due_within_the_limit() -> None:
    view = _view()
    assert plan.due(view, 10) == [Attempt("a", 0, 1), Attempt("b", 0, 1)]
    assert plan.due(view, 1) == [Attempt("a", 0, 1)]
    assert plan.due(view, 0) == []
    assert plan.due(_view(CampaignPaused(campaign_id=CAMPAIGN)), 10) == []


def test_a_failure_with_retries_left_is_due_again_first_and_only_as_often_as_its_type_allows() -> None:
    spec = _spec(execution={"retries": {"failed": 1}})
    failed = _view(_notified("a"), _changed("a", ExecutionState.FAILED), spec=spec)
    assert plan.due(failed, 10) == [Attempt("a", 0, 2), Attempt("b", 0, 1)]
    again = _view(
        _notified("a"),
        _changed("a", ExecutionState.FAILED),
        _notified("a", 2),
        _changed("a", ExecutionState.FAILED, 2),
        spec=spec,
    )
    assert plan.due(again, 10) == [Attempt("b", 0, 1)]
    timed_out = _view(_notified("a"), _changed("a", ExecutionState.TIMED_OUT), spec=spec)
    assert plan.due(timed_out, 10) == [Attempt("b", 0, 1)]  # no retries for timed_out


def test_each_failure_type_counts_its_own_retries() -> None:
    spec = _spec(execution={"retries": {"failed": 1, "timed_out": 1}})
    one_each = [_notified("a"), _changed("a", ExecutionState.TIMED_OUT), _notified("a", 2)]
    failed_after_timeout = _view(*one_each, _changed("a", ExecutionState.FAILED, 2), spec=spec)
    assert plan.due(failed_after_timeout, 1) == [Attempt("a", 0, 3)]  # its one failed retry, after the timeout's
    both_used = _view(
        *one_each,
        _changed("a", ExecutionState.FAILED, 2),
        _notified("a", 3),
        _changed("a", ExecutionState.TIMED_OUT, 3),
        spec=spec,
    )
    assert plan.due(both_used, 1) == [Attempt("b", 0, 1)]


def test_an_execution_is_overdue_after_its_in_progress_timeout_or_else_its_commands_bounds() -> None:
    notified = _notified("a")
    timed = _view(notified, spec=_spec(execution={"in_progress_timeout_s": 5.0}))
    assert plan.overdue(timed, notified.occurred_at + timedelta(seconds=4.9)) == []
    assert [e.device_id for e in plan.overdue(timed, notified.occurred_at + timedelta(seconds=5))] == ["a"]
    bounded = _view(notified, spec=_spec(execution={"ttl_s": 100.0, "timeout_s": 10.0}))
    assert plan.time_limit(bounded.spec.execution) == 110.0 + plan.REPORT_MARGIN_S
    ended = _view(
        notified, _changed("a", ExecutionState.SUCCEEDED), spec=_spec(execution={"in_progress_timeout_s": 1.0})
    )
    assert plan.overdue(ended, notified.occurred_at + timedelta(hours=1)) == []


def test_a_snapshot_campaign_is_over_once_every_target_ended_with_no_retry_left() -> None:
    spec = _spec(waves=[], execution={"retries": {"failed": 1}})
    ends = [e for d in "abcd" for e in (_notified(d), _changed(d, ExecutionState.SUCCEEDED))]
    assert plan.over(_view(*ends, spec=spec)) == "every execution ended"
    assert plan.over(_view(*ends[:-1], spec=spec)) is None  # d still queued
    failing = [*ends[:-1], _changed("d", ExecutionState.FAILED)]
    assert plan.over(_view(*failing, spec=spec)) is None  # d has a retry left
    continuous = msgspec.structs.replace(
        spec, targets=msgspec.convert({"mode": "continuous", "tags": {"a": "b"}}, type(spec.targets))
    )
    assert plan.over(_view(*ends, spec=continuous)) is None


def test_a_rollback_rule_rolls_back_the_devices_that_succeeded_of_a_desired_state_or_update_campaign_only() -> None:
    desired = _spec(document={"desired": {"mode": "eco"}})
    update = _spec(document={"update": {"name": "pump-fw", "version": "2.1.0"}})
    aborted = CampaignAborted(campaign_id=CAMPAIGN, rule="abort[0]: ...", action=RuleAction.ROLLBACK)
    events = [_notified("a"), _changed("a", ExecutionState.SUCCEEDED), _notified("b"), aborted]
    assert plan.rollbacks(_view(*events, spec=desired), 10) == [Attempt("a", 0, 2, rollback=True)]
    assert plan.rollbacks(_view(*events, spec=update), 10) == [Attempt("a", 0, 2, rollback=True)]
    assert plan.rollbacks(_view(*events), 10) == []  # a command cannot be rolled back
    rolled = [*events, _notified("a", 2, rollback=True)]
    assert plan.rollbacks(_view(*rolled, spec=desired), 10) == []


def test_a_report_reads_as_its_executions_new_state_or_is_no_news_or_foreign() -> None:
    view = _view(_notified("a"))
    views = {CAMPAIGN: view}
    mine = ids.command_id(CAMPAIGN, "a", 1)
    assert plan.outcome(views, mine, "a", CommandState.RUNNING, "") == Outcome(
        CAMPAIGN, "a", 1, ExecutionState.IN_PROGRESS, ""
    )
    assert plan.outcome(views, mine, "a", CommandState.FAILED, "no") == Outcome(
        CAMPAIGN, "a", 1, ExecutionState.FAILED, "no"
    )
    assert plan.outcome(views, "c-0123456789abcdef0123", "a", CommandState.SUCCEEDED, "") is None  # not a campaign's
    assert plan.outcome(views, mine, "b", CommandState.SUCCEEDED, "") == "foreign"  # a's id, answered by b
    assert plan.outcome(views, ids.command_id(CAMPAIGN, "b", 1), "b", CommandState.SUCCEEDED, "") == "foreign"
    assert plan.outcome(views, ids.command_id(CAMPAIGN, "a", 2), "a", CommandState.SUCCEEDED, "") == "foreign"
    other = ids.command_id("cp-111111111111", "a", 1)
    assert plan.outcome(views, other, "a", CommandState.SUCCEEDED, "") == "foreign"  # no such campaign
    later = {CAMPAIGN: _view(_notified("a"), _changed("a", ExecutionState.FAILED), _notified("a", 2))}
    assert plan.outcome(later, mine, "a", CommandState.SUCCEEDED, "") is None  # the first attempt's late news
