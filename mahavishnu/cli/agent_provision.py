"""`mahavishnu agent provision`: a device gets its certificate and agent.toml by a claim, its key staying put.

Runs on the device, with the edge install (nats-py and msgspec): it imports the standard
library, core's light modules and the claim's pure modules only. The steps:
  1. read the claim file and check it (its shape; its certificate signed by its CA, naming
     its claim, matching its key): a malformed, foreign or altered file fails here, in one line;
  2. make the device's key (key.pem, 0600) and CSR in --out: the key never leaves that folder;
  3. connect with the claim's bootstrap certificate (which may only ask for a certificate),
     send the CSR to up's provisioning service, and write cert.pem, ca.pem and agent.toml
     beside the key (and trust/root.json, the update metadata's root, when the mesh has one).
     A request turned away for load (429, 503) or left unanswered is asked
     again after a jittered pause, for up to five minutes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import ssl
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats.errors
from nats.aio.client import Client

from core import subjects
from core.errors import MahavishnuError, StoreUnavailable
from core.store import Identity, connect
from core.updates.naming import TRUSTED_ROOT
from mahavishnu.cli.device_keys import check_claim_certificate, make_key_and_csr
from mahavishnu.identity.claimfile import ClaimError, ClaimFile, may_name, named, parse
from mahavishnu.identity.errors import ProvisioningRefused
from mahavishnu.identity.protocol import ANSWERS, ENCODER, Provisioned, ProvisionRequest

ANSWER_S = 30.0  # enrolments are made one at a time: a device in a busy batch waits its turn
# Asked again: "slow down" (a batch booting at once shares its claim's rate), "busy" or no
# service (up restarting), no answer in time. Asking again is safe: a device that asks with
# the same key for the id it was given gets the same answer (the first may have been lost).
RETRY_STATUSES = (429, 503, 504)
RETRY_FOR_S = 300.0  # then it gives up, saying the last refusal
MAX_PAUSE_S = 30.0
FILES = ("key.pem", "cert.pem", "ca.pem", "agent.toml")


def read_claim(path: Path) -> ClaimFile:
    """The claim in `path`, its shape checked; ClaimError (one line) when it cannot be read or is no claim."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise ClaimError(f"cannot read the claim file {path}: {reason}") from None
    return parse(text, str(path))


async def provision(claim_path: Path, device_id: str, out: Path, *, algorithm: str = "ecdsa-p256") -> Provisioned:
    """Provision this device as `device_id` into `out` by the claim in `claim_path`; the answer of the mesh.

    MahavishnuError in one line for everything a user can fix: the claim file (ClaimError),
    an id the claim does not name, a folder already provisioned, the mesh's refusal
    (ProvisioningRefused, with its reason), a mesh that cannot be reached (StoreUnavailable).
    """
    subjects.token(device_id, what="device id")
    claim = read_claim(claim_path)
    taken = [name for name in ("cert.pem", "agent.toml") if (out / name).exists()]
    if taken:
        raise MahavishnuError(f"{out} holds a device's {taken[0]} already: provision into an empty folder")
    bootstrap = Path(tempfile.mkdtemp(prefix="mahavishnu-claim-"))  # 0700: the claim's key, for TLS only
    try:
        for name, pem in (("ca.pem", claim.ca_pem), ("cert.pem", claim.cert_pem), ("key.pem", claim.key_pem)):
            write_private(bootstrap / name, pem)
        check_claim_certificate(bootstrap, claim.claim_id, str(claim_path))
        if not may_name(claim.prefix, claim.count, device_id):
            named_ids = named(claim.prefix, claim.count)
            raise ClaimError(f"claim {claim.claim_id} names {named_ids}, not {device_id!r}: choose one of those")
        # Off the event loop: the key is written with an fsync (it must survive a power cut), and
        # a batch provisioning on one loop (bench/fleet.py: 32 at a time) waited on each one's disk.
        _, csr = await asyncio.to_thread(make_key_and_csr, device_id, out, algorithm)
        url, *alternates = claim.servers
        files = (bootstrap / "ca.pem", bootstrap / "cert.pem", bootstrap / "key.pem")
        identity = Identity(url, *files, alternates=tuple(alternates))
        answer = await _ask(identity, claim, ProvisionRequest(device_id=device_id, csr_pem=csr.read_text()))
    finally:
        shutil.rmtree(bootstrap, ignore_errors=True)
    (out / "cert.pem").write_text(answer.cert_pem)
    (out / "ca.pem").write_text(answer.ca_pem)
    (out / "agent.toml").write_text(answer.agent_toml)
    if answer.root_json:  # a mesh whose update trust exists (ADR 0016)
        (out / TRUSTED_ROOT).parent.mkdir(exist_ok=True)
        (out / TRUSTED_ROOT).write_text(answer.root_json)
    csr.unlink(missing_ok=True)  # said what it had to; the key stays
    return answer


async def _ask(identity: Identity, claim: ClaimFile, request: ProvisionRequest) -> Provisioned:
    try:
        nc = await connect(
            identity,
            name=f"provision-{request.device_id}",
            reconnect=False,
            inbox_prefix=subjects.claim_inbox_prefix(claim.claim_id),
        )
    except StoreUnavailable as exc:
        raise _refused_at_the_door(exc, claim) from None
    try:
        deadline = time.monotonic() + RETRY_FOR_S
        for attempt in itertools.count():
            try:
                return await _request(nc, claim.claim_id, request)
            except ProvisioningRefused as refusal:
                pause = pause_before(attempt)
                if refusal.status not in RETRY_STATUSES or time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)  # the service said "later": the pause is its backoff
        raise AssertionError("unreachable: count() never ends")
    finally:
        await nc.close()


def pause_before(attempt: int) -> float:
    """The pause before asking again (pure but for the jitter): doubling from 1 s to 30 s, ±50 %, so that a
    batch told to slow down together does not come back together."""
    return min(MAX_PAUSE_S, 2.0**attempt) * random.uniform(0.5, 1.5)


async def _request(nc: Client, claim_id: str, request: ProvisionRequest) -> Provisioned:
    try:
        reply = await nc.request(subjects.provision_request(claim_id), ENCODER.encode(request), timeout=ANSWER_S)
    except nats.errors.NoRespondersError:
        raise ProvisioningRefused(503, "no provisioning service answers: is the mesh's `up` running?") from None
    except (nats.errors.TimeoutError, TimeoutError):
        raise ProvisioningRefused(504, f"the provisioning service did not answer within {ANSWER_S:g} s") from None
    headers = reply.headers or {}
    if "Nats-Service-Error-Code" in headers:
        code = headers["Nats-Service-Error-Code"]
        refusal = headers.get("Nats-Service-Error", "refused")
        raise ProvisioningRefused(int(code) if code.isdigit() else 500, f"the mesh refused: {refusal}")
    try:
        return ANSWERS.decode(reply.data)
    except ValueError as exc:
        raise ProvisioningRefused(502, f"the provisioning service's answer is unreadable ({exc})") from None


def _refused_at_the_door(exc: StoreUnavailable, claim: ClaimFile) -> MahavishnuError:
    """What a connection the mesh refused means for a claim (the server says no more than "refused")."""
    cause = exc.__cause__
    url = ", ".join(claim.servers)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return ClaimError(f"the server at {url} is not the claim's mesh (its certificate is not of the claim's CA)")
    # The server ends an expired certificate's handshake with an alert, which reaches us as an
    # SSL error, a reset or an EOF, depending on timing: by our own clock, that is the reason.
    if claim.expires_at <= datetime.now(UTC):
        return ClaimError(f"claim {claim.claim_id} expired at {claim.expires_at:%Y-%m-%d %H:%M} UTC: ask for a new one")
    if "refused certificate" not in str(exc):
        return exc
    return ClaimError(
        f"the mesh at {url} refused claim {claim.claim_id}: it was revoked, or is not this mesh's; ask for a new one"
    )


def write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable by the owner only from its first byte (a key)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
