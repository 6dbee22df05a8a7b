"""Fleet provisioning claims (pure): a claim's state from its events, what its bootstrap identity may do, and
whether it may provision one more device.

A claim is folded from its events (core.events.claim) in any order the stream and the live
subscription deliver them: each event applies once however often it arrives, so a service
that reads the history and follows the live events at the same time gets one answer.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, replace
from datetime import datetime

from certs import certificate_uri
from core import subjects
from core.events import ClaimCreated, ClaimRevoked, DeviceProvisioned, Event
from mahavishnu.identity.claimfile import may_name, named
from mahavishnu.identity.errors import ProvisioningRefused
from mahavishnu.runtime.natsconf import User


class ClaimState(enum.Enum):
    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"
    USED_UP = "used up"


@dataclass(frozen=True)
class Claim:
    claim_id: str
    prefix: str
    count: int
    uses: int
    expires_at: datetime
    serial: str  # its bootstrap certificate's, hex
    url: str
    site: str = ""
    transport: str = "nats"
    tags: tuple[tuple[str, str], ...] = ()
    revoked: bool = False
    provisioned: frozenset[str] = frozenset()

    @property
    def used(self) -> int:
        return len(self.provisioned)

    def state(self, now: datetime) -> ClaimState:
        if self.revoked:
            return ClaimState.REVOKED
        if self.expires_at <= now:
            return ClaimState.EXPIRED
        if self.used >= self.uses:
            return ClaimState.USED_UP
        return ClaimState.LIVE


def new_claim_id() -> str:
    """A fresh claim id: also its bootstrap certificate's identity, so it must not look like a device's."""
    return f"claim-{secrets.token_hex(5)}"


def evolve(claim: Claim | None, event: Event) -> Claim | None:
    """The claim after `event` (pure); a claim's events before its ClaimCreated change nothing."""
    match event:
        case ClaimCreated():
            return Claim(
                claim_id=event.claim_id,
                prefix=event.prefix,
                count=event.count,
                uses=event.uses,
                expires_at=event.expires_at,
                serial=event.serial,
                url=event.url,
                site=event.site,
                transport=event.transport,
                tags=tuple(sorted(event.tags.items())),
                revoked=claim.revoked if claim else False,
                provisioned=claim.provisioned if claim else frozenset(),
            )
        case ClaimRevoked() if claim is not None:
            return replace(claim, revoked=True)
        case DeviceProvisioned(device_id=device) if claim is not None:
            return replace(claim, provisioned=claim.provisioned | {device})
    return claim


def fold(events: list[Event]) -> dict[str, Claim]:
    """Every claim of these events, by id (pure)."""
    claims: dict[str, Claim] = {}
    for event in events:
        claim_id = getattr(event, "claim_id", None)
        if isinstance(claim_id, str):
            claim = evolve(claims.get(claim_id), event)
            if claim is not None:
                claims[claim_id] = claim
    return claims


def check(claim: Claim | None, claim_id: str, device_id: str, now: datetime) -> Claim:
    """The claim, if it may provision `device_id` now; ProvisioningRefused saying why not (pure).

    The certificate authority has the last word on the id (one live certificate per
    identity): this refuses what the claim's own state already rules out.
    """
    if claim is None:
        raise ProvisioningRefused(404, f"claim {claim_id} is unknown to this mesh: ask the operator for a claim of it")
    state = claim.state(now)
    if state is ClaimState.REVOKED:
        raise ProvisioningRefused(410, f"claim {claim_id} was revoked: ask the operator for a new claim")
    if state is ClaimState.EXPIRED:
        raise ProvisioningRefused(
            410, f"claim {claim_id} expired at {claim.expires_at:%Y-%m-%d %H:%M} UTC: ask the operator for a new claim"
        )
    if not may_name(claim.prefix, claim.count, device_id):
        raise ProvisioningRefused(
            403, f"claim {claim_id} may not name device {device_id!r}: it names {named(claim.prefix, claim.count)}"
        )
    if device_id in claim.provisioned:
        raise ProvisioningRefused(
            409, f"device {device_id} was provisioned already: the first device to claim an id keeps it"
        )
    if state is ClaimState.USED_UP:
        raise ProvisioningRefused(
            410, f"claim {claim_id} is used up ({claim.used} of {claim.uses} devices): ask the operator for a new claim"
        )
    return claim


def claim_user(claim_id: str, serial: int) -> User:
    """What a claim's bootstrap identity may do: ask for a certificate, and hear the answer on its own inbox.

    No responses (it answers nobody), no other subject, no JetStream: whoever holds a
    claim file can at most ask the provisioning service, which checks the claim again.
    """
    return User(
        name=certificate_uri(serial),
        publish_allow=(subjects.provision_request(claim_id),),
        subscribe_allow=(f"{subjects.claim_inbox_prefix(claim_id)}.>",),
    )
