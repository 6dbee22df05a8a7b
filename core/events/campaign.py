"""Events of fleet campaigns, on their own stream (CAMPAIGNS, mesh.campaign.>).

A campaign is an aggregate: an operator creates it (`campaign.created`), and from then on
every decision the orchestrator in `up` takes is one of these events, so an orchestrator
that crashes resumes from the stream alone (core.campaigns.state folds them). Operators'
steps (pause, resume, next wave, cancel) are events too, with the operator as `actor`.

Each device's execution is recorded on the campaign's subject for that device
(subjects.campaign_execution): `campaign.notified` for each attempt, then each change of its
state. The command an attempt sends has an id derived from (campaign, device, attempt)
(core.campaigns.ids), so a resumed orchestrator finds out whether it was sent, and never
sends it twice.
"""

from __future__ import annotations

from core import subjects
from core.campaigns.spec import CampaignSpec, RuleAction
from core.campaigns.states import ExecutionState
from core.events.base import Event


class CampaignEvent(Event, frozen=True, kw_only=True):
    """Something that happened to a whole campaign."""

    campaign_id: str


class CampaignCreated(CampaignEvent, frozen=True, kw_only=True, tag="campaign.created.v1"):
    """An operator made a campaign; `spec` is all the orchestrator obeys."""

    spec: CampaignSpec

    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "created")


class CampaignStarted(CampaignEvent, frozen=True, kw_only=True, tag="campaign.started.v1"):
    """The orchestrator began: its start time came (and the targets follow as `campaign.targeted`)."""

    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "started")


class CampaignTargeted(CampaignEvent, frozen=True, kw_only=True, tag="campaign.targeted.v1"):
    """These devices are targets, in wave `wave` (0 when there are no waves).

    A snapshot campaign records its targets at start, in chunks that fit a message; a
    continuous one also records each device that matches later.
    """

    devices: list[str]
    wave: int = 0

    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "targeted")


class CampaignWaveOpened(CampaignEvent, frozen=True, kw_only=True, tag="campaign.wave_opened.v1"):
    """Wave `wave` may now be notified: at start, by its predecessor's success gate, or by an operator."""

    wave: int
    reason: str = ""

    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "wave")


class CampaignPaused(CampaignEvent, frozen=True, kw_only=True, tag="campaign.paused.v1"):
    """No device is notified until `campaign.resumed`; `rule` names the rule or gate that paused it, if one did."""

    reason: str = ""
    rule: str = ""

    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "paused")


class CampaignResumed(CampaignEvent, frozen=True, kw_only=True, tag="campaign.resumed.v1"):
    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "resumed")


class CampaignAborted(CampaignEvent, frozen=True, kw_only=True, tag="campaign.aborted.v1"):
    """An abort rule (or a wave's error gate) fired: no device is notified after this.

    `action` says what follows: cancel the executions not yet taken, or roll back the
    devices that succeeded.
    """

    rule: str
    action: RuleAction

    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "aborted")


class CampaignCanceled(CampaignEvent, frozen=True, kw_only=True, tag="campaign.canceled.v1"):
    """An operator (or the schedule's end) canceled it; `force` also cancels executions in progress."""

    force: bool = False
    reason: str = ""

    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "canceled")


class CampaignFinished(CampaignEvent, frozen=True, kw_only=True, tag="campaign.finished.v1"):
    """Every execution ended (or the schedule's end stopped it); the orchestrator is done with it."""

    reason: str = ""

    def subject(self) -> str:
        return subjects.campaign_event(self.campaign_id, "finished")


class ExecutionNotified(CampaignEvent, frozen=True, kw_only=True, tag="campaign.notified.v1"):
    """The orchestrator sends attempt `attempt` of this device's execution as command `command_id`.

    Recorded before the command is sent: a resumed orchestrator that finds this event looks
    the command up on COMMANDS (its subject is known) instead of sending it again.
    `rollback`: the attempt re-applies the device's previous desired state.
    """

    device_id: str
    attempt: int
    command_id: str
    wave: int = 0
    rollback: bool = False

    def subject(self) -> str:
        return subjects.campaign_execution(self.campaign_id, self.device_id)


class ExecutionChanged(CampaignEvent, frozen=True, kw_only=True, tag="campaign.execution.v1"):
    """Attempt `attempt` of this device's execution reached `state` (in_progress, or how it ended)."""

    device_id: str
    attempt: int
    state: ExecutionState
    detail: str = ""
    rollback: bool = False

    def subject(self) -> str:
        return subjects.campaign_execution(self.campaign_id, self.device_id)
