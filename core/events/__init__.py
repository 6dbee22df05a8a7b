"""Every event of the mesh, and the codec that reads and writes them.

Each name loads its module when first asked for (PEP 562), as core.store does: a device's
agent writes a few kinds of event and reads commands only, and the whole catalog, with
the codec's decoder of every event, cost it 0.3 MB it never used (bench/agent_footprint.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.events.audit import AuditRecorded
    from core.events.base import Event, EventDecodeError, encode, new_event_id
    from core.events.campaign import (
        CampaignAborted,
        CampaignCanceled,
        CampaignCreated,
        CampaignEvent,
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
    from core.events.codec import EVENT_TAGS, EVENT_TYPES, UPCASTERS, decode
    from core.events.command import (
        COMMAND_EVENTS,
        CommandAccepted,
        CommandCanceled,
        CommandEvent,
        CommandExpired,
        CommandFailed,
        CommandIssued,
        CommandRejected,
        CommandRunning,
        CommandSucceeded,
        CommandTimedOut,
        decode_command,
    )
    from core.events.device import (
        SEALED_DEVICE_FIELDS,
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
    from core.events.sealed import Sealed
    from core.events.ssh import SshHostRegistered
    from core.events.update import ArtifactAdded, ArtifactRemoved, TrustMetadataPublished

__all__ = [
    "COMMAND_EVENTS",
    "EVENT_TAGS",
    "EVENT_TYPES",
    "SEALED_DEVICE_FIELDS",
    "UPCASTERS",
    "ArtifactAdded",
    "ArtifactRemoved",
    "AuditRecorded",
    "CampaignAborted",
    "CampaignCanceled",
    "CampaignCreated",
    "CampaignEvent",
    "CampaignFinished",
    "CampaignPaused",
    "CampaignResumed",
    "CampaignStarted",
    "CampaignTargeted",
    "CampaignWaveOpened",
    "CircuitChanged",
    "ClaimCreated",
    "ClaimRevoked",
    "CommandAccepted",
    "CommandCanceled",
    "CommandEvent",
    "CommandExpired",
    "CommandFailed",
    "CommandIssued",
    "CommandRejected",
    "CommandRunning",
    "CommandSucceeded",
    "CommandTimedOut",
    "CommitIndexed",
    "DesiredStateSet",
    "DeviceEnrolled",
    "DeviceErased",
    "DeviceHeartbeat",
    "DeviceProvisioned",
    "DeviceRevoked",
    "DeviceRotated",
    "DeviceTagged",
    "Event",
    "EventDecodeError",
    "ExecutionChanged",
    "ExecutionNotified",
    "FileIndexed",
    "FileRemoved",
    "MeshStarted",
    "MeshStopped",
    "RepoAdded",
    "RepoCommitSeen",
    "RepoPollFailed",
    "RepoRemoved",
    "ReportedState",
    "Sealed",
    "SecretFound",
    "SshHostRegistered",
    "TelemetryReported",
    "TrustMetadataPublished",
    "decode",
    "decode_command",
    "encode",
    "new_event_id",
]

_MODULE_OF = {
    "COMMAND_EVENTS": "core.events.command",
    "EVENT_TAGS": "core.events.codec",
    "EVENT_TYPES": "core.events.codec",
    "SEALED_DEVICE_FIELDS": "core.events.device",
    "UPCASTERS": "core.events.codec",
    "ArtifactAdded": "core.events.update",
    "ArtifactRemoved": "core.events.update",
    "AuditRecorded": "core.events.audit",
    "CampaignAborted": "core.events.campaign",
    "CampaignCanceled": "core.events.campaign",
    "CampaignCreated": "core.events.campaign",
    "CampaignEvent": "core.events.campaign",
    "CampaignFinished": "core.events.campaign",
    "CampaignPaused": "core.events.campaign",
    "CampaignResumed": "core.events.campaign",
    "CampaignStarted": "core.events.campaign",
    "CampaignTargeted": "core.events.campaign",
    "CampaignWaveOpened": "core.events.campaign",
    "CircuitChanged": "core.events.repo",
    "ClaimCreated": "core.events.claim",
    "ClaimRevoked": "core.events.claim",
    "CommandAccepted": "core.events.command",
    "CommandCanceled": "core.events.command",
    "CommandEvent": "core.events.command",
    "CommandExpired": "core.events.command",
    "CommandFailed": "core.events.command",
    "CommandIssued": "core.events.command",
    "CommandRejected": "core.events.command",
    "CommandRunning": "core.events.command",
    "CommandSucceeded": "core.events.command",
    "CommandTimedOut": "core.events.command",
    "CommitIndexed": "core.events.repo",
    "DesiredStateSet": "core.events.device",
    "DeviceEnrolled": "core.events.device",
    "DeviceErased": "core.events.device",
    "DeviceHeartbeat": "core.events.device",
    "DeviceProvisioned": "core.events.claim",
    "DeviceRevoked": "core.events.device",
    "DeviceRotated": "core.events.device",
    "DeviceTagged": "core.events.device",
    "Event": "core.events.base",
    "EventDecodeError": "core.events.base",
    "ExecutionChanged": "core.events.campaign",
    "ExecutionNotified": "core.events.campaign",
    "FileIndexed": "core.events.repo",
    "FileRemoved": "core.events.repo",
    "MeshStarted": "core.events.mesh",
    "MeshStopped": "core.events.mesh",
    "RepoAdded": "core.events.repo",
    "RepoCommitSeen": "core.events.repo",
    "RepoPollFailed": "core.events.repo",
    "RepoRemoved": "core.events.repo",
    "ReportedState": "core.events.device",
    "Sealed": "core.events.sealed",
    "SecretFound": "core.events.repo",
    "SshHostRegistered": "core.events.ssh",
    "TelemetryReported": "core.events.device",
    "TrustMetadataPublished": "core.events.update",
    "decode": "core.events.codec",
    "decode_command": "core.events.command",
    "encode": "core.events.base",
    "new_event_id": "core.events.base",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # asked once: later lookups find it without this function
    return value
