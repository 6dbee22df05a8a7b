"""The catalog of every event, and one typed decoder for all of them, built once at import.

The wire format is JSON: readable with `nats sub`/`nats stream view`, and msgspec
encodes and validates it faster than most binary codecs in Python. The one encoder and
EventDecodeError live in core.events.base, which loads no event but the base, so that a
module that writes events, or reads only its own kinds (core.events.command.decode_command),
need not load the catalog; this module names them too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import msgspec

from core.events.audit import AuditRecorded
from core.events.base import Event, EventDecodeError, encode
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
from core.events.command import COMMAND_EVENTS
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
    *COMMAND_EVENTS,
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

_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(AnyEvent)
_raw_decoder = msgspec.json.Decoder(dict[str, Any])

__all__ = ["EVENT_TAGS", "EVENT_TYPES", "UPCASTERS", "EventDecodeError", "decode", "encode"]


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
