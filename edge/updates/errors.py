"""Why an update is refused before anything on the device changes; one line each, safe to report."""

from __future__ import annotations

from enum import StrEnum

from edge.errors import EdgeError


class Refusal(StrEnum):
    """What was wrong, as a word a campaign, an audit record and a metric can count."""

    ROLLBACK = "rollback"  # metadata older than what the device already trusts
    FREEZE = "freeze"  # expired metadata
    MIX_AND_MATCH = "mix_and_match"  # a target or role file that does not match the snapshot
    SIGNATURES = "signatures"  # too few valid signatures, or a stranger's
    LENGTH = "length"  # the artifact is not the signed length (truncated, or longer)
    HASH = "hash"  # the artifact's bytes are not the signed ones
    UNKNOWN_TARGET = "unknown_target"  # no such name@version in the signed targets
    DEVICE_TYPE = "device_type"  # an artifact for another kind of device
    DOWNGRADE = "downgrade"  # older than the installed version, and the campaign does not allow it
    DEPENDS = "depends"  # something the artifact needs is not installed


class UpdateRefused(EdgeError):
    """The update was refused before install; `.refusal` says which check, str() the one-line reason."""

    def __init__(self, refusal: Refusal, reason: str) -> None:
        self.refusal = refusal
        super().__init__(f"update refused ({refusal}): {reason}")
