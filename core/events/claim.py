"""Events about fleet provisioning claims: a bootstrap credential for one batch of devices.

A claim is made by an operator (`mahavishnu fleet claim create`), names the device ids it
may provision (its prefix and count), how many devices it may provision (`uses`) and until
when; up's provisioning service folds these events into each claim's state
(mahavishnu.identity.claims), so the stream, not the claim file a device holds, says what a
claim may still do.
"""

from __future__ import annotations

from datetime import datetime

from core import subjects
from core.events.base import Event


class ClaimCreated(Event, frozen=True, kw_only=True, tag="claim.created.v1"):
    """A claim was made, with its bootstrap certificate (`serial`, as hex) issued until `expires_at`."""

    claim_id: str
    prefix: str
    count: int  # it may name prefix + 0 .. count-1, zero-padded (mahavishnu.identity.claimfile.device_ids)
    uses: int  # how many devices it may provision in all
    expires_at: datetime
    serial: str
    url: str  # where its devices connect (the agent.toml of a device without a site)
    site: str = ""
    transport: str = "nats"
    tags: dict[str, str] = {}

    def subject(self) -> str:
        return subjects.claim_event(self.claim_id, "created")


class ClaimRevoked(Event, frozen=True, kw_only=True, tag="claim.revoked.v1"):
    """A claim was revoked: it provisions nothing more, and its bootstrap certificate is revoked."""

    claim_id: str
    serial: str
    reason: str = "unspecified"

    def subject(self) -> str:
        return subjects.claim_event(self.claim_id, "revoked")


class DeviceProvisioned(Event, frozen=True, kw_only=True, tag="claim.provisioned.v1"):
    """A device got its certificate by this claim (its own DeviceEnrolled says the rest): one use of the claim."""

    claim_id: str
    device_id: str
    serial: str

    def subject(self) -> str:
        return subjects.claim_event(self.claim_id, "provisioned")
