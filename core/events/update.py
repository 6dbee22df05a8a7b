"""Events of software updates: artifacts added and removed, and the signed metadata published.

An artifact's bytes are in the ARTIFACTS_BUCKET object store and its signed metadata in
METADATA_BUCKET (core.updates.naming); these events say what happened to them, with the
actor, so the audit of who shipped what to the fleet is the stream itself. A device's own
progress through an update is its `update.install` command's lifecycle (core.events.command)
and the versions it reports (ReportedState).
"""

from __future__ import annotations

from datetime import datetime

from core import subjects
from core.events.base import Event


class ArtifactAdded(Event, frozen=True, kw_only=True, tag="artifact.added.v1"):
    """An artifact's bytes were stored; `length` and `sha256` are what every device checks them against."""

    name: str
    version: str
    device_type: str
    length: int
    sha256: str
    depends: tuple[str, ...] = ()  # "name@version" (or "name") the artifact needs installed first
    filename: str = ""  # the file's own name when it was added, for operators

    def subject(self) -> str:
        return subjects.artifact_event(self.name, "added")


class ArtifactRemoved(Event, frozen=True, kw_only=True, tag="artifact.removed.v1"):
    """An artifact's bytes were deleted and its target withdrawn from the signed metadata."""

    name: str
    version: str
    reason: str = ""

    def subject(self) -> str:
        return subjects.artifact_event(self.name, "removed")


class TrustMetadataPublished(Event, frozen=True, kw_only=True, tag="trust.published.v1"):
    """A new version of one TUF role's metadata (root, targets, snapshot, timestamp) was stored.

    `signers` are the key ids whose signatures it carries: which keys signed what, never the keys.
    """

    role: str
    version: int
    expires: datetime
    signers: tuple[str, ...] = ()

    def subject(self) -> str:
        return subjects.trust_event(self.role, "published")
