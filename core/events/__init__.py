"""Every event of the mesh, and the codec that reads and writes them."""

from core.events.audit import AuditRecorded
from core.events.base import Event, new_event_id
from core.events.claim import ClaimCreated, ClaimRevoked, DeviceProvisioned
from core.events.codec import EVENT_TAGS, EVENT_TYPES, UPCASTERS, EventDecodeError, decode, encode
from core.events.command import (
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

__all__ = [
    "EVENT_TAGS",
    "EVENT_TYPES",
    "SEALED_DEVICE_FIELDS",
    "UPCASTERS",
    "AuditRecorded",
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
    "decode",
    "encode",
    "new_event_id",
]
