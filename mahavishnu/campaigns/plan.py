"""What the orchestrator does next for one campaign, from its folded view (pure).

The orchestrator (orchestrator.py) asks these after every event it applies and on each tick;
they read a `CampaignView` (core.campaigns.state) and never touch the network, so a
resumed orchestrator, folding the same stream, takes the same decisions.

    due(view, limit)        which attempts to notify: retries first, then targets of open waves
    rollbacks(view, limit)  which devices to roll back, once a rollback rule aborted the campaign
    overdue(view, now)      executions past their in-progress timeout
    over(view)              why the campaign is done (every target's execution ended), or None
    outcome(...)            what a device's report of a campaign command means for its execution
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from core.campaigns import ids
from core.campaigns.spec import Execution as ExecutionSpec
from core.campaigns.spec import Retries, RuleAction, TargetMode
from core.campaigns.state import CampaignView, Execution, execution_state
from core.campaigns.states import CampaignStatus, ExecutionState
from core.commands.lifecycle import CommandState

# An execution without in_progress_timeout waits for its command's own bounds (the TTL to be
# taken, the timeout to run), and this much more for the device's report to travel back.
REPORT_MARGIN_S = 30.0


@dataclass(frozen=True)
class Attempt:
    """One notification to make: attempt `attempt` of `device_id`'s execution."""

    device_id: str
    wave: int
    attempt: int
    rollback: bool = False

    def command_id(self, campaign_id: str) -> str:
        return ids.command_id(campaign_id, self.device_id, self.attempt)


def retries_left(retries: Retries, execution: Execution) -> bool:
    """Whether `execution`'s ending earns it another attempt: its failures of that type within the type's maximum.

    Each type counts on its own (Execution.failures): with `failed = 2, timed_out = 1` a
    device may fail twice and time out once, and gets an attempt after each of them.
    """
    if execution.rollback:
        return False
    allowed = {ExecutionState.FAILED: retries.failed, ExecutionState.TIMED_OUT: retries.timed_out}
    if execution.state not in allowed:
        return False
    return execution.failures.get(execution.state.value, 0) <= allowed[execution.state]


def due(view: CampaignView, limit: int) -> list[Attempt]:
    """Up to `limit` attempts to notify now, for a running campaign: retries first, then pending targets
    of the open waves in the order they were targeted."""
    if view.status != CampaignStatus.RUNNING or limit <= 0:
        return []
    found: list[Attempt] = []
    for execution in view.executions.values():
        if len(found) >= limit:
            return found
        if retries_left(view.spec.execution.retries, execution):
            found.append(Attempt(execution.device_id, execution.wave, execution.attempt + 1))
    for device, wave in view.targets.items():
        if len(found) >= limit:
            break
        if wave < view.waves_open and device not in view.executions:
            found.append(Attempt(device, wave, 1))
    return found


def rollbacks(view: CampaignView, limit: int) -> list[Attempt]:
    """Up to `limit` rollbacks to notify now: a desired-state or update campaign aborted by a rule whose
    action is rollback re-applies the previous desired state, or reinstalls the previous version, on each
    device whose execution succeeded (also one that succeeds after the abort), once."""
    document = view.spec.document
    rolling = view.abort_action == RuleAction.ROLLBACK and (document.desired is not None or document.update is not None)
    if view.status != CampaignStatus.ABORTED or not rolling or limit <= 0:
        return []
    found = [
        Attempt(e.device_id, e.wave, e.attempt + 1, rollback=True)
        for e in view.executions.values()
        if e.state == ExecutionState.SUCCEEDED and not e.rollback
    ]
    return found[:limit]


def time_limit(spec: ExecutionSpec) -> float:
    """How long after its notification an execution may stay queued or in progress (seconds)."""
    if spec.in_progress_timeout_s is not None:
        return spec.in_progress_timeout_s
    return spec.ttl_s + spec.timeout_s + REPORT_MARGIN_S


def overdue(view: CampaignView, now: datetime) -> list[Execution]:
    """The executions still queued or in progress longer than the campaign allows."""
    limit = time_limit(view.spec.execution)
    return [
        execution
        for execution in view.executions.values()
        if not execution.ended
        and execution.notified_at is not None
        and (now - execution.notified_at).total_seconds() >= limit
    ]


def all_ended(view: CampaignView) -> bool:
    """Whether no execution is queued or in progress."""
    return all(execution.ended for execution in view.executions.values())


def over(view: CampaignView) -> str | None:
    """Why a running snapshot campaign is done now, or None while it is not: every target was notified
    (every wave open), every execution ended and none has a retry left.

    A continuous campaign runs until its schedule's end or an operator's cancel: a device
    may still match later. An aborted one stays aborted (its executions under way still
    end, and are recorded).
    """
    if view.status != CampaignStatus.RUNNING or view.spec.targets.mode == TargetMode.CONTINUOUS:
        return None
    if any(device not in view.executions for device in view.targets) or not all_ended(view):
        return None
    if any(retries_left(view.spec.execution.retries, e) for e in view.executions.values()):
        return None
    return "every execution ended"


@dataclass(frozen=True)
class Outcome:
    """What a device's report says of one campaign execution: its new state, and the attempt it belongs to."""

    campaign_id: str
    device_id: str
    attempt: int
    state: ExecutionState
    detail: str


def outcome(
    views: dict[str, CampaignView], command_id: str, device_id: str, command: CommandState, detail: str
) -> Outcome | Literal["foreign"] | None:
    """What a report (command `command_id` of `device_id` reached `command`) means.

    An Outcome to record; None when it changes nothing (not a campaign's command, or no
    news for its execution); "foreign" when it is shaped like a campaign's command but is no
    execution of that campaign (a device answering a campaign it was not part of, or an
    attempt never notified): ignored, and counted by the caller.
    """
    found = ids.campaign_of(command_id)
    if found is None:
        return None
    campaign_id, attempt = found
    view = views.get(campaign_id)
    if view is None or not ids.belongs(command_id, campaign_id, device_id):
        return "foreign"
    execution = view.executions.get(device_id)
    if execution is None or execution.attempt < attempt:
        return "foreign"
    if execution.attempt != attempt or execution.ended:
        return None  # an earlier attempt's late news, or a second ending: the first one stays
    state = execution_state(command)
    if state == execution.state:
        return None
    return Outcome(campaign_id, device_id, attempt, state, detail)
