"""What a campaign asks for: its document, targets, pace, waves, abort rules, executions, schedule (pure data).

A campaign file (TOML) decodes into `CampaignSpec`; the same struct travels inside
`campaign.created.v1`, so the stream holds exactly what the orchestrator obeys.
`mahavishnu.campaigns.specfile` reads the file: it refuses unknown keys (a typo such as
`maximum_per_minut` must not quietly run a campaign at full speed) and checks the rules
that span fields (exactly one document, one pace, a valid cron expression), each refusal
one line naming the field. The structs themselves ignore unknown fields, like every event:
an older reader of the stream must survive a campaign made by a newer version.

Durations are seconds here (floats); the file may write "10m" (core.units).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import msgspec

Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class _Spec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    pass


class CommandDocument(_Spec, frozen=True, kw_only=True):
    """Run this command on every target (through the command path: `cmd send`'s events)."""

    name: str
    args: dict[str, Any] = {}


class UpdateDocument(_Spec, frozen=True, kw_only=True):
    """Install this artifact (`mahavishnu artifact add`) on every target: the `update.install` command,
    verified by each device against the signed metadata before anything changes."""

    name: str
    version: str
    allow_downgrade: bool = False  # a device running a newer version refuses it otherwise


class Document(_Spec, frozen=True, kw_only=True):
    """Exactly one of: a command, a desired shadow state (merged into each device's desired state), or an update."""

    command: CommandDocument | None = None
    desired: dict[str, Any] | None = None
    update: UpdateDocument | None = None

    @property
    def kinds(self) -> int:
        """How many documents were given (exactly one is right)."""
        return sum(part is not None for part in (self.command, self.desired, self.update))


class TargetMode(StrEnum):
    SNAPSHOT = "snapshot"  # the devices that match at start, fixed then
    CONTINUOUS = "continuous"  # also devices that match later, until the campaign ends


class Targets(_Spec, frozen=True, kw_only=True):
    """An explicit list of devices, or a filter over the devices read model (every given field must match)."""

    devices: list[str] = []
    tags: dict[str, str] = {}
    site: str | None = None
    transport: str | None = None
    presence: str | None = None  # "online" | "offline"
    mode: TargetMode = TargetMode.SNAPSHOT


class IncreaseAfter(StrEnum):
    NOTIFIED = "notified"
    SUCCEEDED = "succeeded"


class ExponentialRate(_Spec, frozen=True, kw_only=True):
    """AWS IoT Jobs' exponential rollout: start at `base_per_minute`, multiply by `increment_factor`
    each time `number` more devices were notified (or succeeded)."""

    base_per_minute: Positive
    increment_factor: Annotated[float, msgspec.Meta(gt=1, le=5)]
    increase_after: IncreaseAfter = IncreaseAfter.NOTIFIED
    number: Annotated[int, msgspec.Meta(ge=1)]
    maximum_per_minute: Positive | None = None  # the cap it never passes


class Pace(_Spec, frozen=True, kw_only=True):
    """One of: a fixed maximum per minute, or an exponential rate. Neither: as fast as the mesh takes."""

    maximum_per_minute: Positive | None = None
    exponential: ExponentialRate | None = None


class GateAction(StrEnum):
    NEXT_WAVE = "next_wave"
    PAUSE = "pause"
    ABORT = "abort"


class Wave(_Spec, frozen=True, kw_only=True):
    """A group of the targets, opened in order: by percentage of the targets, or by a filter.

    When `success_threshold_pct` of the wave's devices succeeded, `on_success` runs (open the
    next wave, or pause for an operator's `next-wave`); when `error_threshold_pct` of them
    ended in failure, `on_error` runs (pause or abort).
    """

    name: str = ""
    percent: Percent | None = None
    tags: dict[str, str] = {}
    success_threshold_pct: Percent = 100.0
    on_success: GateAction = GateAction.NEXT_WAVE
    error_threshold_pct: Percent | None = None
    on_error: GateAction = GateAction.PAUSE


class FailureType(StrEnum):
    FAILED = "failed"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    ANY = "any"


class RuleAction(StrEnum):
    CANCEL = "cancel"
    PAUSE = "pause"
    # re-apply the previous desired state, or reinstall the previous version, on the devices that succeeded
    ROLLBACK = "rollback"


class AbortRule(_Spec, frozen=True, kw_only=True):
    """Fires when at least `min_executed` executions ended and `threshold_pct` of them ended as `failure_type`."""

    failure_type: FailureType
    threshold_pct: Percent
    min_executed: Count = 0
    action: RuleAction = RuleAction.CANCEL


class Retries(_Spec, frozen=True, kw_only=True):
    """How many more attempts a device gets after each kind of failure."""

    failed: Count = 0
    timed_out: Count = 0


class Execution(_Spec, frozen=True, kw_only=True):
    """One device's execution: how long it may stay in progress, the command's TTL and timeout, its retries."""

    in_progress_timeout_s: Positive | None = None  # None: the command's own timeout and TTL bound it
    ttl_s: Positive = 3600.0  # how long a notified command waits for an offline device
    timeout_s: Positive = 60.0  # how long the device lets the command run
    retries: Retries = Retries()


class AtEnd(StrEnum):
    STOP = "stop"  # notify no one more; executions under way finish
    CANCEL = "cancel"  # also cancel the executions not yet taken


class Window(_Spec, frozen=True, kw_only=True):
    """A maintenance window: opens at each time `cron` names (in `timezone`) and lasts `duration_s`."""

    cron: str
    duration_s: Positive
    timezone: str = "UTC"


class Schedule(_Spec, frozen=True, kw_only=True):
    start: datetime | None = None  # None: at once
    end: datetime | None = None
    at_end: AtEnd = AtEnd.STOP
    windows: list[Window] = []  # none: always open


class CampaignSpec(_Spec, frozen=True, kw_only=True):
    """A whole campaign as its file describes it."""

    name: str
    document: Document
    targets: Targets
    pace: Pace = Pace()
    waves: list[Wave] = []
    abort: list[AbortRule] = []
    execution: Execution = Execution()
    schedule: Schedule = Schedule()
