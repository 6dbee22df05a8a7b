"""A campaign's state, folded from its events: the one fold the orchestrator and the read model share.

The orchestrator resumes from it after a crash; the campaigns read model stores what it
gives (counts per state and per wave), so "counts rebuilt from the stream equal the live
ones" holds by construction. No I/O: `apply` takes one event and changes the view in place
(a campaign over 10,000 devices must not be copied per event).

The counts are kept as the events come, in O(1) an event: `apply` looks at the devices an
event touches before and after it, and moves their share from what it was to what it is.
The orchestrator asks them after every outcome and the read model stores them after every
event, so walking a 10,000-device campaign for them would make its 30,000 events quadratic.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from core.campaigns.spec import CampaignSpec, RuleAction
from core.campaigns.states import ENDED, CampaignStatus, ExecutionState
from core.commands.lifecycle import CommandState
from core.events.base import Event
from core.events.campaign import (
    CampaignAborted,
    CampaignCanceled,
    CampaignCreated,
    CampaignFinished,
    CampaignPaused,
    CampaignResumed,
    CampaignStarted,
    CampaignTargeted,
    CampaignWaveOpened,
    ExecutionChanged,
    ExecutionNotified,
)

PENDING = "pending"  # a target not notified yet
TARGETS = "targets"  # a wave's targets
WHOLE = -1  # the key of the whole campaign's counts, beside the waves' 0, 1, ...

# How a command's state reads as the state of the execution that sent it.
_FROM_COMMAND: dict[CommandState, ExecutionState] = {
    CommandState.ISSUED: ExecutionState.QUEUED,
    CommandState.ACCEPTED: ExecutionState.IN_PROGRESS,
    CommandState.RUNNING: ExecutionState.IN_PROGRESS,
    CommandState.SUCCEEDED: ExecutionState.SUCCEEDED,
    CommandState.FAILED: ExecutionState.FAILED,
    CommandState.TIMED_OUT: ExecutionState.TIMED_OUT,
    CommandState.REJECTED: ExecutionState.REJECTED,
    CommandState.EXPIRED: ExecutionState.TIMED_OUT,  # never taken within its TTL: it timed out waiting
    CommandState.CANCELED: ExecutionState.CANCELED,
}


def execution_state(command: CommandState) -> ExecutionState:
    """The execution state a command's state means (pure)."""
    return _FROM_COMMAND[command]


@dataclass
class Execution:
    """The latest attempt of one device's execution."""

    device_id: str
    wave: int
    attempt: int
    command_id: str
    state: ExecutionState = ExecutionState.QUEUED
    detail: str = ""
    notified_at: datetime | None = None
    changed_at: datetime | None = None
    rollback: bool = False
    # How many of the device's attempts so far ended failed, and timed out: what its retries
    # are counted against, per failure type (spec.execution.retries).
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.state in ENDED


@dataclass
class CampaignView:
    campaign_id: str
    spec: CampaignSpec
    created_at: datetime
    created_by: str
    status: CampaignStatus = CampaignStatus.CREATED
    started_at: datetime | None = None
    ended_at: datetime | None = None
    targets: dict[str, int] = field(default_factory=dict)  # device -> its wave
    waves_open: int = 0  # waves 0 .. waves_open-1 may be notified
    executions: dict[str, Execution] = field(default_factory=dict)  # device -> its latest attempt
    notifications: int = 0  # attempts sent, retries and rollbacks included
    rule: str = ""  # the rule or gate that paused or aborted it, as it said
    reason: str = ""  # why it paused, was canceled or finished
    abort_action: RuleAction | None = None
    # The rules and gates an operator resumed past, by name ("abort[0]", "waves[1].error": the
    # part of `rule` before its colon). They do not pause the campaign again: otherwise a
    # resume would be undone by the very rule it answered, at once.
    acknowledged: set[str] = field(default_factory=set)
    force_canceled: bool = False
    last_sequence: int = 0  # the stream position of the last event applied (set by the caller)

    # (wave, or WHOLE; "pending" | "targets" | an execution state) -> how many devices
    counted: Counter[tuple[int, str]] = field(default_factory=Counter, repr=False, compare=False)

    def counts(self) -> dict[str, int]:
        """Executions per state, plus `pending`: targets not notified yet."""
        return {
            PENDING: self.counted[(WHOLE, PENDING)],
            **{state.value: self.counted[(WHOLE, state.value)] for state in ExecutionState},
        }

    def wave_counts(self) -> list[dict[str, object]]:
        """Per wave: its name, whether it is open, its targets and executions per state."""
        return [
            {
                "wave": index,
                "name": self.spec.waves[index].name if index < len(self.spec.waves) else "",
                "open": index < self.waves_open,
                TARGETS: self.counted[(index, TARGETS)],
                **{state.value: self.counted[(index, state.value)] for state in ExecutionState},
            }
            for index in range(self.wave_slots)
        ]

    @property
    def wave_slots(self) -> int:
        """How many waves the counts have: a campaign without waves counts as one."""
        return max(len(self.spec.waves), 1)

    def share(self, device: str) -> Counter[tuple[int, str]]:
        """What one device adds to the counts: pending or its execution's state, and the same per wave."""
        found: Counter[tuple[int, str]] = Counter()
        wave = self.targets.get(device)
        execution = self.executions.get(device)
        if wave is not None:
            if execution is None:
                found[(WHOLE, PENDING)] += 1
            if 0 <= wave < self.wave_slots:
                found[(wave, TARGETS)] += 1
        if execution is not None:
            found[(WHOLE, execution.state.value)] += 1
            if 0 <= execution.wave < self.wave_slots:
                found[(execution.wave, execution.state.value)] += 1
        return found


def _touched(event: Event) -> tuple[str, ...]:
    """The devices whose share of the counts `event` may change."""
    match event:
        case CampaignTargeted(devices=devices):
            return tuple(dict.fromkeys(devices))  # a device named twice moves once
        case ExecutionNotified(device_id=device) | ExecutionChanged(device_id=device):
            return (device,)
    return ()


def apply(view: CampaignView | None, event: Event) -> CampaignView | None:
    """Apply one event of the campaign; `view` is None until its `campaign.created` (events before it are ignored)."""
    if isinstance(event, CampaignCreated):
        return view or CampaignView(event.campaign_id, event.spec, event.occurred_at, event.actor)
    if view is None:
        return None
    touched = _touched(event)
    before = [view.share(device) for device in touched]
    _apply(view, event)
    for device, was in zip(touched, before, strict=True):
        view.counted.update(view.share(device))
        view.counted.subtract(was)
    return view


def _apply(view: CampaignView, event: Event) -> None:
    match event:
        case CampaignStarted():
            view.status, view.started_at = CampaignStatus.RUNNING, event.occurred_at
        case CampaignTargeted(devices=devices, wave=wave):
            for device in devices:
                view.targets.setdefault(device, wave)
        case CampaignWaveOpened(wave=wave):
            view.waves_open = max(view.waves_open, wave + 1)
        case CampaignPaused(reason=reason, rule=rule):
            if view.status == CampaignStatus.RUNNING:
                view.status, view.reason, view.rule = CampaignStatus.PAUSED, reason, rule
        case CampaignResumed():
            if view.status == CampaignStatus.PAUSED:
                if view.rule:
                    view.acknowledged.add(view.rule.partition(":")[0])
                view.status, view.reason, view.rule = CampaignStatus.RUNNING, "", ""
        case CampaignAborted(rule=rule, action=action):
            if view.status in (CampaignStatus.CREATED, CampaignStatus.RUNNING, CampaignStatus.PAUSED):
                view.status, view.rule, view.abort_action = CampaignStatus.ABORTED, rule, action
        case CampaignCanceled(force=force, reason=reason):
            if view.status not in (CampaignStatus.CANCELED, CampaignStatus.FINISHED):
                view.status, view.reason, view.ended_at = CampaignStatus.CANCELED, reason, event.occurred_at
            view.force_canceled = view.force_canceled or force
        case CampaignFinished(reason=reason):
            if view.status != CampaignStatus.CANCELED:
                view.status, view.reason = CampaignStatus.FINISHED, reason or view.reason
            view.ended_at = view.ended_at or event.occurred_at
        case ExecutionNotified():
            _notified(view, event)
        case ExecutionChanged():
            _changed(view, event)


def _notified(view: CampaignView, event: ExecutionNotified) -> None:
    current = view.executions.get(event.device_id)
    if current is not None and current.attempt >= event.attempt and current.rollback == event.rollback:
        return  # read twice
    view.notifications += 1
    earlier = {} if current is None or event.rollback else current.failures
    view.executions[event.device_id] = Execution(
        device_id=event.device_id,
        wave=event.wave,
        attempt=event.attempt,
        command_id=event.command_id,
        notified_at=event.occurred_at,
        changed_at=event.occurred_at,
        rollback=event.rollback,
        failures=dict(earlier),
    )


def _changed(view: CampaignView, event: ExecutionChanged) -> None:
    current = view.executions.get(event.device_id)
    if current is None and event.state == ExecutionState.REMOVED and event.device_id in view.targets:
        # a target removed before it was notified: it never will be
        view.executions[event.device_id] = Execution(
            device_id=event.device_id,
            wave=view.targets[event.device_id],
            attempt=event.attempt,
            command_id="",
            state=ExecutionState.REMOVED,
            detail=event.detail,
            changed_at=event.occurred_at,
        )
        return
    if current is None or current.attempt != event.attempt or current.rollback != event.rollback or current.ended:
        return  # an older attempt's late news, or a second ending: the first one stays
    current.state, current.detail, current.changed_at = event.state, event.detail, event.occurred_at
    if event.state in (ExecutionState.FAILED, ExecutionState.TIMED_OUT):
        current.failures[event.state.value] = current.failures.get(event.state.value, 0) + 1


def fold(events: list[Event]) -> CampaignView | None:
    """The view of one campaign from its events in stream order (pure)."""
    view: CampaignView | None = None
    for event in events:
        view = apply(view, event)
    return view
