"""Making, reading and revoking fleet provisioning claims (the operator's side; up's service is provisioning.py).

A claim is a bootstrap certificate of kind "claim" (certs), valid exactly until the claim
expires, handed to the devices of one batch in a claim file (claimfile.py), plus its
ClaimCreated event, which is what up's provisioning service believes. Revoking a claim
revokes its certificate in the CA (the auth callout refuses it from then on) and records
ClaimRevoked, on which up's provisioning service cuts off the claim's live connections.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from certs import CertificateAuthority, NotIssuedError
from certs.names import CLAIM_KIND, parse_reason
from core import subjects
from core.config import Settings
from core.events import ClaimCreated, ClaimRevoked
from core.store import EventStore
from core.tags import tag_change
from mahavishnu.control.devices import TRANSPORTS
from mahavishnu.identity.claimfile import ClaimError, ClaimFile, check_naming, named, render
from mahavishnu.identity.claims import Claim, evolve, fold, new_claim_id
from mahavishnu.runtime.home import Home, write_private
from mahavishnu.sites import hub as sites

MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=365)


@dataclass(frozen=True)
class Created:
    claim: ClaimFile
    path: Path  # the claim file (0600): hand it to the batch's devices
    event: ClaimCreated


def claims_dir(home: Home) -> Path:
    return home.root / "claims"


async def create(
    home: Home,
    settings: Settings,
    store: EventStore,
    *,
    prefix: str,
    count: int,
    ttl: timedelta,
    uses: int | None = None,
    site: str | None = None,
    transport: str = "nats",
    tags: Mapping[str, str] | None = None,
    url: str | None = None,
    out: Path | None = None,
    now: datetime | None = None,
) -> Created:
    """Make a claim for the devices prefix + 0 .. count-1: its certificate, its file (0600) and its event.

    `uses` (default `count`) is how many devices it may provision in all; `url` where its
    devices connect (default: this mesh's client URL). Everything is checked before the CA
    issues anything: ClaimError (naming, uses, ttl), MahavishnuError (transport), SiteError
    (an unknown site), TagError (a malformed tag); then CertError, StoreError.
    """
    check_naming(prefix, count)
    uses = count if uses is None else uses
    if isinstance(uses, bool) or not 1 <= uses <= count:
        raise ClaimError(f"--uses {uses} must be between 1 and the claim's count ({count}): each id is claimed once")
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ClaimError(f"a claim lives between 1 minute and 365 days, not {ttl}: give --ttl e.g. 7d")
    if transport not in TRANSPORTS:
        raise ClaimError(f"unknown transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
    if site is not None:
        if transport == "mqtt":
            raise ClaimError("edge sites have no MQTT listener yet: make an MQTT claim without --site")
        sites.find(home, site)
    labels, _ = tag_change(tags, ()) if tags else ({}, [])
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    expires = now + ttl
    identity = home.control_identity(settings)
    servers = (url,) if url else identity.servers
    claim_id = new_claim_id()
    ca = CertificateAuthority.load(home.ca_dir)
    # The CA counts validity in whole days from `now`: issued as of `expires - days`, the
    # certificate ends exactly when the claim does, so the callout refuses it from then on.
    days = math.ceil(ttl / timedelta(days=1))
    with tempfile.TemporaryDirectory(prefix="claim-") as folder:
        issued = ca.issue_client(
            claim_id, kind=CLAIM_KIND, out_dir=Path(folder), days=days, now=expires - timedelta(days=days)
        )
        assert issued.key_path is not None  # issued without a CSR: the CA made the key
        claim = ClaimFile(
            claim_id=claim_id,
            servers=servers,
            ca_pem=issued.ca_path.read_text(),
            cert_pem=issued.cert_path.read_text(),
            key_pem=issued.key_path.read_text(),
            prefix=prefix,
            count=count,
            expires_at=expires,
            site=site or "",
        )
    path = out or claims_dir(home) / f"{claim_id}.json"
    try:
        write_private(path, render(claim))
    except OSError as exc:  # its certificate is issued, but nobody holds it: it opens nothing
        raise ClaimError(f"cannot write the claim file {path}: {exc.strerror}; make the claim again") from None
    event = ClaimCreated(
        claim_id=claim_id,
        prefix=prefix,
        count=count,
        uses=uses,
        expires_at=expires,
        serial=f"{issued.serial:x}",
        url=servers[0],
        site=site or "",
        transport=transport,
        tags=labels,
        actor="control",
    )
    await store.append(event)
    await store.audit.record(
        actor="control",
        category="identity",
        action="claim.create",
        target=claim_id,
        details={
            "names": named(prefix, count),
            "uses": uses,
            "expires_at": expires.isoformat(),
            "serial": event.serial,
            "site": event.site,
            "transport": transport,
            "tags": labels,
        },
    )
    return Created(claim, path, event)


async def read_claims(store: EventStore) -> dict[str, Claim]:
    """Every claim of the mesh, folded from the stream."""
    return fold([stored.event async for stored in store.read(subjects.claim_events()) if stored.event is not None])


async def read_claim(store: EventStore, claim_id: str) -> Claim:
    """One claim from its events; ClaimError when the mesh has none of that id."""
    subjects.token(claim_id, what="claim id")
    claim: Claim | None = None
    async for stored in store.read(subjects.claim_events(claim_id)):
        if stored.event is not None:
            claim = evolve(claim, stored.event)
    if claim is None:
        raise ClaimError(f"no claim {claim_id!r}: see `mahavishnu fleet claim list`")
    return claim


async def revoke(home: Home, store: EventStore, claim_id: str, *, reason: str = "unspecified") -> ClaimRevoked:
    """Revoke a claim: its certificate in the CA, then ClaimRevoked (up cuts its connections off on it).

    ClaimError when there is no such claim or it is revoked already; InvalidIdError for a
    bad reason; StoreError when the stream does not take the event (the certificate stays
    revoked: run it again to record it).
    """
    parse_reason(reason)
    claim = await read_claim(store, claim_id)
    if claim.revoked:
        raise ClaimError(f"claim {claim_id} is revoked already")
    ca = CertificateAuthority.load(home.ca_dir)
    if not ca.is_revoked(int(claim.serial, 16)):
        try:
            ca.revoke(claim_id, reason=reason, serial=int(claim.serial, 16))
        except NotIssuedError as exc:  # a claim of another CA's mesh (a restored stream): nothing to revoke here
            raise ClaimError(f"claim {claim_id}'s certificate is unknown to this CA ({exc})") from exc
    event = ClaimRevoked(claim_id=claim_id, serial=claim.serial, reason=reason, actor="control")
    await store.append(event)
    await store.audit.record(
        actor="control",
        category="identity",
        action="claim.revoke",
        target=claim_id,
        details={"reason": reason, "serial": claim.serial, "provisioned": claim.used},
    )
    return event


def describe(claim: Claim, now: datetime) -> dict[str, Any]:
    """A claim as `fleet claim show` prints it (pure): no key, no certificate."""
    return {
        "claim_id": claim.claim_id,
        "state": claim.state(now).value,
        "names": named(claim.prefix, claim.count),
        "prefix": claim.prefix,
        "count": claim.count,
        "uses": claim.uses,
        "used": claim.used,
        "expires_at": claim.expires_at.isoformat(),
        "site": claim.site,
        "transport": claim.transport,
        "tags": dict(claim.tags),
        "serial": claim.serial,
        "provisioned": sorted(claim.provisioned),
    }
