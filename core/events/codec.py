"""One encoder and one typed decoder for every event, built once at import.

The wire format is JSON: readable with `nats sub`/`nats stream view`, and msgspec
encodes and validates it faster than most binary codecs in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import msgspec

from core.errors import MahavishnuError
from core.events.audit import AuditRecorded
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
from core.events.claim import ClaimCreated, ClaimRevoked, DeviceProvisioned
from core.events.command import (
    CommandAccepted,
    CommandCanceled,
    CommandExpired,
    CommandFailed,
    CommandIssued,
    CommandRejected,
    CommandRunning,
    CommandSucceeded,
    CommandTimedOut,
)
from core.events.device import (
    DesiredStateSet,
    DeviceEnrolled,
    DeviceErased,
    DeviceHeartbeat,
    DeviceRevoked,
    DeviceRotated,
    DeviceTagged,
    ReportedState,
    TelemetryReported,
)
from core.events.mesh import MeshStarted, MeshStopped
from core.events.repo import (
    CircuitChanged,
    CommitIndexed,
    FileIndexed,
    FileRemoved,
    RepoAdded,
    RepoCommitSeen,
    RepoPollFailed,
    RepoRemoved,
    SecretFound,
)
from core.events.ssh import SshHostRegistered
from core.events.update import ArtifactAdded, ArtifactRemoved, TrustMetadataPublished

EVENT_TYPES: tuple[type[Event], ...] = (
    MeshStarted,
    MeshStopped,
    DeviceEnrolled,
    DeviceRevoked,
    DeviceRotated,
    TelemetryReported,
    DeviceHeartbeat,
    DesiredStateSet,
    ReportedState,
    DeviceErased,
    DeviceTagged,
    CommandIssued,
    CommandAccepted,
    CommandRunning,
    CommandSucceeded,
    CommandFailed,
    CommandTimedOut,
    CommandRejected,
    CommandExpired,
    CommandCanceled,
    AuditRecorded,
    RepoAdded,
    RepoRemoved,
    RepoCommitSeen,
    RepoPollFailed,
    CircuitChanged,
    FileIndexed,
    FileRemoved,
    SecretFound,
    CommitIndexed,
    SshHostRegistered,
    ClaimCreated,
    ClaimRevoked,
    DeviceProvisioned,
    CampaignCreated,
    CampaignStarted,
    CampaignTargeted,
    CampaignWaveOpened,
    CampaignPaused,
    CampaignResumed,
    CampaignAborted,
    CampaignCanceled,
    CampaignFinished,
    ExecutionNotified,
    ExecutionChanged,
    ArtifactAdded,
    ArtifactRemoved,
    TrustMetadataPublished,
)
EVENT_TAGS: frozenset[str] = frozenset(str(t.__struct_config__.tag) for t in EVENT_TYPES)

AnyEvent = Union[EVENT_TYPES]  # type: ignore[valid-type]  # noqa: UP007 (a runtime union of the catalog)

# An upcaster turns the raw dict of an old tag into the raw dict of a newer one (its
# "type" included); decode() applies them in a chain until it reaches a current tag.
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[str, Upcaster] = {}

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(AnyEvent)
_raw_decoder = msgspec.json.Decoder(dict[str, Any])


class EventDecodeError(MahavishnuError):
    """A payload is not a valid event of any known type; `.reason` says why (for parking)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed event: {reason}")


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(payload: bytes) -> Event:
    """Decode any event, upcasting old versions; EventDecodeError otherwise."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:
        raw = _upcast_or_raise(payload, exc)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"not JSON: {exc}") from exc
    try:
        return msgspec.convert(raw, AnyEvent)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise EventDecodeError(f"after upcasting {raw.get('type')!r}: {exc}") from exc


def _upcast_or_raise(payload: bytes, error: msgspec.ValidationError) -> dict[str, Any]:
    raw = _raw_decoder.decode(payload)
    tag = raw.get("type")
    if not isinstance(tag, str) or tag not in UPCASTERS:
        if isinstance(tag, str) and tag not in EVENT_TAGS:
            raise EventDecodeError(f"unknown event type {tag!r}") from error
        raise EventDecodeError(str(error)) from error
    seen: set[str] = set()
    while tag in UPCASTERS:
        if tag in seen:
            raise EventDecodeError(f"upcaster loop at {tag!r}") from error
        seen.add(tag)
        raw = UPCASTERS[tag](raw)
        tag = raw.get("type")
    return raw
