"""up's provisioning service: a device holding a claim sends its CSR and gets its certificate and agent.toml.

A micro service (`nats micro ls` lists it) on mesh.provision.<claim>, in a queue group,
on a connection of its own, so a flood of requests queues nowhere but here. What it
knows of the claims it folds from their events (claims.py): it follows every claim's events
from its start, and reads a claim's history the first time the claim is asked for (after
subscribing, so nothing falls in between; an event seen twice applies once). So `up`
starts without reading any claim, however many there are.

For each request, in this order:
  1. the claim's token bucket (20/s, burst 40): empty, it answers 429 "slow down" at once,
     and audits the refusals of a flood in one record every few seconds;
  2. a bound on the requests waiting for an enrolment (503 "busy"): nothing queues without end;
  3. in a task of its own, so the next request is admitted meanwhile: the request's shape,
     the claim (known, not revoked or expired, names the id, not used up), the CSR (its
     key strong enough, its CN the id), the id not live in the CA; then, one enrolment at a
     time (the CA decides "first wins" only if two never run at once), the enrolment
     (control.devices.enroll: certificate, consumer, DeviceEnrolled), DeviceProvisioned on
     the claim, the claim's tags (control.tags), and the answer.
A device that asks again for an id its claim gave it, with the same key (its answer was
lost on the way), gets the same answer again; any other device asking for that id is refused.
Every outcome is audited before it is answered (category identity, action device.provision,
outcome ok or denied with the reason); no record holds the CSR or any key.
On ClaimRevoked it cuts the claim's live connections off, once the CA lists its certificate
as revoked (as cutoff.py does for devices).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from cryptography import x509
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from certs import AlreadyIssuedError, CertError, CertificateAuthority, live_certificates, read_revocations
from certs.build import PublicKey, csr_public_key, same_public_key
from core import subjects
from core.config import Settings
from core.errors import MahavishnuError, StoreError
from core.events import ClaimRevoked, DeviceProvisioned, EventDecodeError, decode
from core.micro import answer_as_micro
from core.store import EventStore, Identity, connect
from core.updates.naming import TRUSTED_ROOT
from mahavishnu.control import devices, tags
from mahavishnu.identity.bucket import TokenBucket
from mahavishnu.identity.claims import Claim, check, evolve
from mahavishnu.identity.cutoff import cut_off
from mahavishnu.identity.errors import ProvisioningRefused
from mahavishnu.identity.protocol import ENCODER, REQUESTS, Provisioned, ProvisionRequest
from mahavishnu.runtime.home import Home

log = logging.getLogger("mahavishnu.provisioning")

SERVICE_NAME = "mahavishnu-provision"
QUEUE = "mahavishnu-provision"
ACTION = "device.provision"
# A request holds a device id and a CSR (an RSA-4096 one is under 2 KiB): anything larger is
# refused unread. (The server cannot hold a callout user to a smaller payload in our mode.)
MAX_REQUEST = 16 * 1024


@dataclass(frozen=True)
class Limits:
    """How much one claim, and the whole service, may be asked (checked on construction)."""

    rate: float = 20.0  # requests per second per claim
    burst: float = 40.0
    max_waiting: int = 64  # admitted requests waiting for their enrolment, all claims together
    audit_floods_every_s: float = 5.0  # one audit record per claim for the refusals of a flood

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1 or self.max_waiting < 1 or self.audit_floods_every_s <= 0:
            raise ValueError(f"provisioning limits must be positive (burst and max_waiting at least 1): {self}")


@dataclass
class _Flood:
    """The refusals of one claim's flood not yet audited."""

    refused: int = 0
    audited_at: float = float("-inf")


@dataclass
class Counts:
    """What the service answered since it started (read by tests and benchmarks)."""

    provisioned: int = 0
    again: int = 0  # answered again to a device that asked again with its key (its answer was lost)
    refused: int = 0
    throttled: int = 0


class ProvisioningService:
    """Answers claims' requests; `open` connects and starts it, `stop` ends it and closes its connection."""

    def __init__(
        self,
        nc: Client,
        store: EventStore,
        home: Home,
        settings: Settings,
        *,
        system: Client | None = None,
        servers: int = 1,
        limits: Limits | None = None,
    ) -> None:
        self._nc = nc
        self._store = store
        self._home = home
        self._settings = settings
        self._system = system
        self._servers = servers
        self.limits = limits or Limits()
        self.claims: dict[str, Claim] = {}
        self.counts = Counts()
        self._buckets: dict[str, TokenBucket] = {}
        self._floods: dict[str, _Flood] = {}
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._events: Subscription | None = None
        self._service: Service | None = None

    @classmethod
    async def open(
        cls,
        identity: Identity,
        store: EventStore,
        home: Home,
        settings: Settings,
        *,
        system: Client | None = None,
        servers: int = 1,
        limits: Limits | None = None,
        version: str = "0.0.0",
    ) -> ProvisioningService:
        """Connect as `identity` (control), learn the claims, and start answering. StoreError when it cannot."""
        nc = await connect(identity, name="mahavishnu-provisioning")
        service = cls(nc, store, home, settings, system=system, servers=servers, limits=limits)
        try:
            await service.start(version)
        except BaseException:
            await nc.close()
            raise
        return service

    async def start(self, version: str = "0.0.0") -> None:
        self._events = await self._nc.subscribe(subjects.claim_events(), cb=self._on_event)
        await self._nc.flush()  # following before any claim's history is read: nothing falls in between
        self._service = await add_service(
            self._nc, name=SERVICE_NAME, version=version, description="Mahavishnu fleet provisioning by claim"
        )
        await self._service.add_endpoint(
            name="provision", subject=f"{subjects.PROVISION_PREFIX}.*", handler=self._admit, queue_group=QUEUE
        )

    async def stop(self) -> None:
        """Stop taking requests, answer the ones taken, close the connection."""
        if self._service is not None:
            await self._service.stop()
            self._service = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._events is not None:
            await self._events.unsubscribe()
            self._events = None
        await self.close()

    async def close(self) -> None:
        """Close the connection without draining anything: for a stop on an error, when the server may be gone
        (draining would wait for it)."""
        if not self._nc.is_closed:
            with contextlib.suppress(OSError):
                await self._nc.close()

    # --- the claims' state ------------------------------------------------------------

    def _apply(self, event: Any) -> None:
        claim_id = getattr(event, "claim_id", None)
        if isinstance(claim_id, str):
            claim = evolve(self.claims.get(claim_id), event)
            if claim is not None:
                self.claims[claim_id] = claim

    def _take_use(self, claim: Claim, device_id: str) -> None:
        """Count `device_id` against its claim now, as its DeviceProvisioned will (idempotent)."""
        self.claims[claim.claim_id] = replace(claim, provisioned=claim.provisioned | {device_id})

    def _give_back_use(self, claim_id: str, device_id: str) -> None:
        """The use taken for a device that got no certificate after all."""
        claim = self.claims.get(claim_id)
        if claim is not None:
            self.claims[claim_id] = replace(claim, provisioned=claim.provisioned - {device_id})

    async def _learn(self, claim_id: str) -> None:
        """Read the history of a claim this service has not folded yet (made before it started, or just now)."""
        try:
            async for stored in self._store.read(subjects.claim_events(claim_id)):
                if stored.event is not None:
                    self._apply(stored.event)
        except ValueError:  # no claim id at all: nothing to read
            return

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = decode(msg.data)
        except EventDecodeError:
            return  # the projections park what does not decode; it changes no claim
        self._apply(event)
        if isinstance(event, ClaimRevoked) and self._system is not None:
            await self._cut_off(event)

    async def _cut_off(self, event: ClaimRevoked) -> None:
        serial = int(event.serial, 16)
        # only a certificate the CA itself revoked: an event names it, the CA's list decides
        if serial not in {entry.serial for entry in read_revocations(self._home.ca_dir)}:
            return
        assert self._system is not None
        try:
            kicked = await cut_off(self._system, [serial], servers=self._servers)
        except (TimeoutError, nats.errors.Error, ValueError) as exc:  # the callout still refuses it from now on
            log.warning(
                "a revoked claim's connections were not cut off", extra={"claim": event.claim_id, "error": str(exc)}
            )
            return
        log.info("revoked claim cut off", extra={"claim": event.claim_id, "connections": kicked})

    # --- the requests -------------------------------------------------------------------

    async def _admit(self, request: Request) -> None:
        """Admit a request or refuse it at once; never waits for an enrolment (micro awaits this per message)."""
        if not request._msg.reply:  # nats-py's Request hides it; no answer could reach the device
            self.counts.refused += 1
            return
        claim_id = request.subject.rsplit(".", 1)[-1]
        bucket = self._bucket(claim_id)
        if not bucket.take(time.monotonic()):
            self.counts.throttled += 1
            self._flooded(claim_id)
            raise ProvisioningRefused(429, f"slow down: claim {claim_id} is asked too often; retry in a few seconds")
        if len(request.data) > MAX_REQUEST:
            self.counts.refused += 1
            raise ProvisioningRefused(413, f"a request holds a device id and a CSR: at most {MAX_REQUEST} bytes")
        if self._waiting >= self.limits.max_waiting:
            self.counts.refused += 1
            raise ProvisioningRefused(503, "the provisioning service is busy: retry in a few seconds")
        self._waiting += 1
        task = asyncio.create_task(answer_as_micro(self._answer, request, endpoint="provision", log=log))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._waiting -= 1
        self._tasks.discard(task)

    def _bucket(self, claim_id: str) -> TokenBucket:
        # Only known claims get a bucket of their own (a claim identity can only name its own
        # claim); whatever names an unknown one shares one, so no flood of names grows this.
        key = claim_id if claim_id in self.claims else ""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.limits.rate, self.limits.burst)
        return bucket

    def _flooded(self, claim_id: str) -> None:
        """Count a throttled request; audit the flood's refusals together, at most once every few seconds."""
        flood = self._floods.setdefault(claim_id if claim_id in self.claims else "", _Flood())
        flood.refused += 1
        now = time.monotonic()
        if now - flood.audited_at < self.limits.audit_floods_every_s:
            return
        refused, flood.refused, flood.audited_at = flood.refused, 0, now
        details = {"claim": claim_id, "reason": "slow down: asked too often", "status": 429, "refused": refused}
        task = asyncio.create_task(self._audit(claim_id, "", "denied", details))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, request: Request) -> None:
        """Provision the device the request names, or raise the ProvisioningRefused that says why not (audited)."""
        claim_id = request.subject.rsplit(".", 1)[-1]
        device_id = ""
        try:
            asked = _parse(request.data)
            device_id = asked.device_id
            answer, again = await self._provision(claim_id, asked)
        except ProvisioningRefused as refusal:
            self.counts.refused += 1
            refused = {"claim": claim_id, "reason": refusal.description, "status": refusal.status}
            await self._audit(claim_id, device_id, "denied", refused)
            raise
        given = {"claim": claim_id, "serial": answer.serial} | ({"again": True} if again else {})
        await self._audit(claim_id, device_id, "ok", given)
        self.counts.provisioned += 0 if again else 1
        await request.respond(ENCODER.encode(answer))

    async def _provision(self, claim_id: str, asked: ProvisionRequest) -> tuple[Provisioned, bool]:
        """The device's answer, and whether it was given before (the device asked again)."""
        device_id = asked.device_id
        csr = asked.csr_pem.encode()
        if claim_id not in self.claims:
            await self._learn(claim_id)
        try:
            claim = check(self.claims.get(claim_id), claim_id, device_id, datetime.now(UTC))
        except ProvisioningRefused as refusal:
            return self._again(claim_id, device_id, csr, refusal), True
        # A weak key, or a CSR for another id, is refused by the CA before anything is issued
        # (CertError below; the CSR is checked once, off the event loop).
        # The claim's use is taken here, before the awaits (the certificate issued off the loop,
        # the consumer, the events) during which other enrolments go on. Two devices naming one
        # id may both pass this first look; the CA's own check, one change at a time
        # (devices._ca_change), lets only the first have it, and the second gets its use back.
        if _live(self._home, device_id):
            raise ProvisioningRefused(409, _taken(device_id))
        self._take_use(claim, device_id)
        out = self._home.root / "devices" / device_id
        try:
            enrolment = await devices.enroll(
                self._home,
                self._settings,
                self._store,
                device_id,
                out_dir=out,
                csr_pem=csr,
                url=None if claim.site else claim.url,
                transport=claim.transport,
                site=claim.site or None,
            )
        except AlreadyIssuedError:
            self._give_back_use(claim_id, device_id)
            raise ProvisioningRefused(409, _taken(device_id)) from None
        except CertError as exc:
            self._give_back_use(claim_id, device_id)
            raise ProvisioningRefused(400, str(exc)) from None
        except MahavishnuError as exc:
            if not _live(self._home, device_id):  # refused before its certificate was issued
                self._give_back_use(claim_id, device_id)
            log.error("a claimed device could not be enrolled", extra={"claim": claim_id, "reason": str(exc)})
            raise ProvisioningRefused(503, f"device {device_id} could not be enrolled: {exc}") from None
        serial = f"{enrolment.issued.serial:x}"
        # The device holds a certificate from here on: what follows is recorded as well as it
        # can be, never refused (the device could not ask again: its id is taken).
        provisioned = DeviceProvisioned(claim_id=claim_id, device_id=device_id, serial=serial, actor=claim_id)
        self._apply(provisioned)
        await self._record(provisioned, claim)
        return await asyncio.to_thread(_answer_from, out, device_id, serial), False  # four files: off the loop

    def _again(self, claim_id: str, device_id: str, csr: bytes, refusal: ProvisioningRefused) -> Provisioned:
        """The answer a device got already, if it asks again with the same key (its answer was lost); else `refusal`.

        The CSR's signature proves that the asker holds the key of the certificate this claim
        issued for the id: the same device asking again, never a second device (its key differs).
        """
        claim = self.claims.get(claim_id)
        if refusal.status != 409 or claim is None or device_id not in claim.provisioned:
            raise refusal
        folder = self._home.root / "devices" / device_id
        try:
            issued = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        except (OSError, ValueError):
            raise refusal from None
        if not same_public_key(issued.public_key(), _csr_key(csr, device_id)):  # type: ignore[arg-type]
            raise refusal
        if CertificateAuthority.load(self._home.ca_dir).is_revoked(issued.serial_number):
            raise ProvisioningRefused(410, f"device {device_id}'s certificate was revoked: ask the operator") from None
        self.counts.again += 1
        return _answer_from(folder, device_id, f"{issued.serial_number:x}")

    async def _record(self, provisioned: DeviceProvisioned, claim: Claim) -> None:
        try:
            await self._store.append(provisioned)
            if claim.tags:
                await tags.tag(self._store, provisioned.device_id, dict(claim.tags), actor=claim.claim_id)
        except MahavishnuError as exc:
            log.error(
                "a provisioned device's claim use or tags were not recorded",
                extra={"claim": claim.claim_id, "device": provisioned.device_id, "reason": str(exc)},
            )

    async def _audit(self, claim_id: str, device_id: str, outcome: str, details: dict[str, Any]) -> None:
        try:
            await self._store.audit.record(
                actor=claim_id if _is_token(claim_id) else "unknown",
                category="identity",
                action=ACTION,
                target=device_id[:64],
                outcome=outcome,
                details=details,
            )
        except (StoreError, ValueError) as exc:
            log.error("a provisioning outcome could not be audited", extra={"claim": claim_id, "reason": str(exc)})


def _parse(data: bytes) -> ProvisionRequest:
    try:
        return REQUESTS.decode(data)
    except msgspec.DecodeError as exc:
        raise ProvisioningRefused(
            400, f'send {{"device_id": "...", "csr_pem": "..."}} (as `mahavishnu agent provision` does): {exc}'
        ) from None


def _csr_key(csr: bytes, device_id: str) -> PublicKey:
    try:
        return csr_public_key(csr, device_id)
    except CertError as exc:
        raise ProvisioningRefused(400, str(exc)) from None


def _answer_from(folder: Path, device_id: str, serial: str) -> Provisioned:
    """The answer to a device: what its enrolment wrote into `folder` (never a key: it sent a CSR)."""
    return Provisioned(
        device_id=device_id,
        serial=serial,
        cert_pem=(folder / "cert.pem").read_text(),
        ca_pem=(folder / "ca.pem").read_text(),
        agent_toml=(folder / "agent.toml").read_text(),
        root_json=(folder / TRUSTED_ROOT).read_text() if (folder / TRUSTED_ROOT).is_file() else "",
    )


def _taken(device_id: str) -> str:
    return f"device {device_id} already holds a live certificate: the first device to claim an id keeps it"


def _live(home: Home, device_id: str) -> bool:
    """Whether the CA holds a live certificate for `device_id` (cheap: the registry is read incrementally)."""
    return bool(live_certificates(home.ca_dir, device_id))


def _is_token(value: str) -> bool:
    try:
        subjects.token(value)
    except ValueError:
        return False
    return True
