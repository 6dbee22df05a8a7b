"""Provisioning by claim against a real mesh: the device's side (`agent provision`), up's service, its refusals
and their audit records, and what a claim's bootstrap identity may do (nothing but ask)."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from nats.aio.client import Client
from nats.aio.msg import Msg

from core import subjects
from core.events import AuditRecorded, DeviceEnrolled, DeviceProvisioned, DeviceTagged
from core.store import EventStore, Identity, connect
from mahavishnu.cli.agent_provision import provision
from mahavishnu.control import commands
from mahavishnu.identity import claiming
from mahavishnu.identity.claimfile import ClaimError, ClaimFile
from mahavishnu.identity.errors import ProvisioningRefused
from mahavishnu.identity.protocol import ENCODER, ProvisionRequest
from mahavishnu.identity.provisioning import Limits
from tests.harness import Mesh, start_mesh
from tests.mahavishnu.cli.test_agent import agent_process
from tests.outcomes import follow_outcome
from tests.waiting import eventually, eventually_async


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("provisioning"), provisioning=Limits())
    yield running
    running.stop()


async def new_claim(mesh: Mesh, store: EventStore, folder: Path, **options: Any) -> claiming.Created:
    """A claim for b<random>-0 .. (count 3 unless said), its file in `folder`."""
    options = {"count": 3, "ttl": timedelta(hours=1), **options}
    return await claiming.create(
        mesh.home,
        mesh.settings,
        store,
        prefix=f"b{uuid.uuid4().hex[:6]}-",
        url=mesh.identity.url,
        out=folder / f"claim-{uuid.uuid4().hex[:6]}.json",
        **options,
    )


def csr_pem(common_name: str, key: Any = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def ask(nc: Client, claim_id: str, device_id: str, csr: str | None = None) -> Msg:
    body = ENCODER.encode(ProvisionRequest(device_id=device_id, csr_pem=csr or csr_pem(device_id)))
    return await nc.request(subjects.provision_request(claim_id), body, timeout=10)


def refusal(reply: Msg) -> tuple[int, str]:
    headers = reply.headers or {}
    assert "Nats-Service-Error-Code" in headers, f"not refused: {reply.data[:200]!r}"
    return int(headers["Nats-Service-Error-Code"]), headers["Nats-Service-Error"]


async def audited(store: EventStore, claim_id: str, outcome: str, reason: str = "") -> AuditRecorded:
    """The provisioning audit record of this claim with this outcome (and reason), once it is there."""
    found: list[AuditRecorded] = []

    async def look() -> bool:
        found.clear()
        async for stored in store.read(subjects.audit("identity", claim_id)):
            event = stored.event
            if (
                isinstance(event, AuditRecorded)
                and event.action == "device.provision"
                and event.outcome == outcome
                and reason in str(event.details.get("reason", ""))
            ):
                found.append(event)
        return bool(found)

    await eventually_async(look, timeout=10, what=f"a {outcome} audit record of {claim_id} saying {reason!r}")
    return found[-1]


async def refused_on_the_device(attempt: Awaitable[object]) -> str:
    """The ClaimError `attempt` ends in, as text.

    A refused TLS handshake (an expired certificate, a foreign CA) leaves nats-py's bare
    socket to the garbage collector (an unclosed StreamWriter, a ResourceWarning); it is
    collected here, where the test refused it on purpose, rather than in whichever test runs
    when the collector does.
    """
    try:
        await attempt
    except ClaimError as exc:
        said = str(exc)
    else:
        raise AssertionError("the device was not refused")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    return said


@dataclass
class Bootstrap:
    """A connection with a claim's bootstrap certificate, and the errors the server sent it."""

    nc: Client
    errors: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        return [e for e in self.errors if "violation" in e.lower()]


def bootstrap_identity(claim: ClaimFile, folder: Path) -> Identity:
    folder.mkdir(parents=True, exist_ok=True)
    for name, pem in (("ca.pem", claim.ca_pem), ("cert.pem", claim.cert_pem), ("key.pem", claim.key_pem)):
        (folder / name).write_text(pem)
    return Identity(claim.servers[0], folder / "ca.pem", folder / "cert.pem", folder / "key.pem")


async def open_bootstrap(claim: ClaimFile, folder: Path) -> Bootstrap:
    errors: list[str] = []

    async def collect(error: Exception) -> None:
        errors.append(str(error))

    nc = await connect(
        bootstrap_identity(claim, folder),
        name=f"bootstrap-{claim.claim_id}",
        reconnect=False,
        error_cb=collect,
        inbox_prefix=subjects.claim_inbox_prefix(claim.claim_id),
    )
    return Bootstrap(nc, errors)


@pytest.fixture
async def claimed(mesh: Mesh, store: EventStore, tmp_path: Path) -> claiming.Created:
    return await new_claim(mesh, store, tmp_path)


@pytest.fixture
async def bootstrap(claimed: claiming.Created, tmp_path: Path) -> AsyncIterator[Bootstrap]:
    opened = await open_bootstrap(claimed.claim, tmp_path / "bootstrap")
    yield opened
    if not opened.nc.is_closed:
        await opened.nc.close()


# --- the happy paths ------------------------------------------------------------------------------


async def test_a_device_provisions_itself_and_connects_with_its_own_certificate(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    created = await new_claim(mesh, store, tmp_path, tags={"batch": "b7"})
    claim = created.event
    device = f"{claim.prefix}1"
    out = tmp_path / "device"
    answer = await provision(created.path, device, out)

    assert sorted(p.name for p in out.iterdir()) == ["agent.toml", "ca.pem", "cert.pem", "key.pem"]
    assert (out / "key.pem").stat().st_mode & 0o077 == 0
    assert f'device_id = "{device}"' in (out / "agent.toml").read_text()
    assert answer.device_id == device
    identity = Identity(mesh.identity.url, out / "ca.pem", out / "cert.pem", out / "key.pem")
    nc = await connect(identity, name=device, reconnect=False, inbox_prefix=subjects.device_inbox_prefix(device))
    await nc.close()

    enrolled = [s.event async for s in store.read(subjects.device_events(device))]
    assert [type(e) for e in enrolled] == [DeviceEnrolled, DeviceTagged]
    assert isinstance(enrolled[1], DeviceTagged) and enrolled[1].tags == {"batch": "b7"}
    assert enrolled[1].actor == claim.claim_id
    uses = [s.event async for s in store.read(subjects.claim_events(claim.claim_id))]
    assert isinstance(uses[-1], DeviceProvisioned)
    assert (uses[-1].device_id, uses[-1].serial) == (device, answer.serial)
    record = await audited(store, claim.claim_id, "ok")
    assert record.target == device and record.details["serial"] == answer.serial
    text = json.dumps(record.details)
    assert "PRIVATE KEY" not in text and "REQUEST" not in text


async def test_an_edge_only_device_provisions_with_openssl_and_runs_a_command(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    created = await new_claim(mesh, store, tmp_path)
    device, out = f"{created.event.prefix}0", tmp_path / "device"
    # no `cryptography` and no control plane: the key, the CSR and the claim's check are openssl's
    made = agent_process("agent", "provision", "--claim", str(created.path), "--id", device, "--out", str(out))
    said, err = made.communicate(timeout=60)
    assert made.returncode == 0, err
    assert f"provisioned {device}" in said
    assert (out / "key.pem").stat().st_mode & 0o077 == 0
    assert not (out / "csr.pem").exists()

    agent = agent_process("agent", "run", "--config", str(out / "agent.toml"))
    try:
        command = await commands.send(store, device, "ping", {}, ttl_s=60, timeout_s=5, actor="control")
        assert (await follow_outcome(store, command, deadline_s=60)).state == "succeeded"
    finally:
        agent.terminate()
        agent.communicate(timeout=30)


# --- refusals, each audited -----------------------------------------------------------------------


async def test_an_id_the_claim_does_not_name_is_refused(
    store: EventStore, claimed: claiming.Created, bootstrap: Bootstrap, tmp_path: Path
) -> None:
    claim = claimed.event
    with pytest.raises(ClaimError, match=rf"names {claim.prefix}0 .. {claim.prefix}2, not '{claim.prefix}3'"):
        await provision(claimed.path, f"{claim.prefix}3", tmp_path / "device")  # said on the device already
    status, why = refusal(await ask(bootstrap.nc, claim.claim_id, "someone-else"))
    assert status == 403 and f"may not name device 'someone-else': it names {claim.prefix}0 .." in why
    record = await audited(store, claim.claim_id, "denied", "may not name")
    assert record.target == "someone-else" and record.details["status"] == 403


async def test_a_used_up_claim_is_refused(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    created = await new_claim(mesh, store, tmp_path, uses=1)
    prefix = created.event.prefix
    await provision(created.path, f"{prefix}0", tmp_path / "first")
    with pytest.raises(ProvisioningRefused, match=r"is used up \(1 of 1 devices\)") as refused:
        await provision(created.path, f"{prefix}1", tmp_path / "second")
    assert refused.value.status == 410
    await audited(store, created.event.claim_id, "denied", "used up")


async def test_devices_provisioning_at_once_never_use_a_claim_more_often_than_it_allows(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    created = await new_claim(mesh, store, tmp_path, count=5, uses=2)
    prefix = created.event.prefix
    outcomes = await asyncio.gather(
        *(provision(created.path, f"{prefix}{n}", tmp_path / f"d{n}") for n in range(5)), return_exceptions=True
    )
    given = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, ProvisioningRefused)]
    assert len(given) == 2 and len(refused) == 3, outcomes
    assert all(r.status == 410 and "used up (2 of 2 devices)" in str(r) for r in refused)


async def test_the_first_device_to_claim_an_id_keeps_it(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    created = await new_claim(mesh, store, tmp_path)
    device = f"{created.event.prefix}2"
    outcomes = await asyncio.gather(
        provision(created.path, device, tmp_path / "one"),
        provision(created.path, device, tmp_path / "two"),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, ProvisioningRefused)]
    assert len(refused) == 1 and refused[0].status == 409, outcomes
    assert "the first device to claim an id keeps it" in str(refused[0])
    assert sum(1 for folder in ("one", "two") if (tmp_path / folder / "cert.pem").exists()) == 1
    await audited(store, created.event.claim_id, "denied", "keeps it")


async def test_an_id_enrolled_by_the_operator_is_not_claimed(
    mesh: Mesh, store: EventStore, claimed: claiming.Created, bootstrap: Bootstrap, tmp_path: Path
) -> None:
    from mahavishnu.control import devices

    device = f"{claimed.event.prefix}2"
    await devices.enroll(mesh.home, mesh.settings, store, device, out_dir=tmp_path / "pushed", url=mesh.identity.url)
    status, why = refusal(await ask(bootstrap.nc, claimed.event.claim_id, device))
    assert status == 409 and f"device {device} already holds a live certificate" in why


async def test_a_device_that_asks_again_with_its_key_gets_its_answer_again(
    store: EventStore, claimed: claiming.Created, bootstrap: Bootstrap
) -> None:
    claim, device = claimed.event, f"{claimed.event.prefix}1"
    key = ec.generate_private_key(ec.SECP256R1())
    first = await ask(bootstrap.nc, claim.claim_id, device, csr_pem(device, key))
    again = await ask(bootstrap.nc, claim.claim_id, device, csr_pem(device, key))  # the first answer was lost
    assert "Nats-Service-Error-Code" not in (again.headers or {}), again.headers
    assert json.loads(again.data) == json.loads(first.data)
    record = await audited(store, claim.claim_id, "ok")
    assert record.details["again"] is True
    status, why = refusal(await ask(bootstrap.nc, claim.claim_id, device))  # another key: another device
    assert status == 409 and "the first device to claim an id keeps it" in why
    uses = [s.event async for s in store.read(subjects.claim_events(claim.claim_id))]
    assert sum(isinstance(e, DeviceProvisioned) for e in uses) == 1


async def test_a_weak_key_or_a_csr_of_another_device_is_refused(
    store: EventStore, claimed: claiming.Created, bootstrap: Bootstrap
) -> None:
    claim = claimed.event
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    status, why = refusal(
        await ask(bootstrap.nc, claim.claim_id, f"{claim.prefix}0", csr_pem(f"{claim.prefix}0", weak))
    )
    assert status == 400 and "CSR key is too weak (RSA, 1024 bits)" in why
    await audited(store, claim.claim_id, "denied", "too weak")

    status, why = refusal(await ask(bootstrap.nc, claim.claim_id, f"{claim.prefix}0", csr_pem(f"{claim.prefix}1")))
    assert status == 400 and f"CSR names CN={claim.prefix}1, not {claim.prefix}0" in why
    await audited(store, claim.claim_id, "denied", f"CSR names CN={claim.prefix}1")

    strong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    reply = await ask(bootstrap.nc, claim.claim_id, f"{claim.prefix}0", csr_pem(f"{claim.prefix}0", strong))
    assert "Nats-Service-Error-Code" not in (reply.headers or {}), reply.headers  # RSA 2048 is strong enough
    assert await _audits(store, claim.claim_id, "ok") == 1  # neither refusal used the claim up


async def _audits(store: EventStore, claim_id: str, outcome: str) -> int:
    records = [s.event async for s in store.read(subjects.audit("identity", claim_id))]
    return sum(1 for r in records if isinstance(r, AuditRecorded) and r.outcome == outcome)


async def test_a_revoked_claim_is_cut_off_and_refused(
    mesh: Mesh, store: EventStore, claimed: claiming.Created, bootstrap: Bootstrap, tmp_path: Path
) -> None:
    claim = claimed.event
    await claiming.revoke(mesh.home, store, claim.claim_id, reason="key_compromise")
    # its live connection is cut, as a revoked device's is (ADR 0012's bound: 2 s)
    await eventually(lambda: bootstrap.nc.is_closed, timeout=2.0, what="the revoked claim's connection to close")
    said = await refused_on_the_device(provision(claimed.path, f"{claim.prefix}0", tmp_path / "device"))
    assert f"refused claim {claim.claim_id}: it was revoked" in said
    # asked by anyone who still could (the control identity), up's service says it too
    status, why = refusal(await ask(store.nc, claim.claim_id, f"{claim.prefix}0"))
    assert status == 410 and why == f"claim {claim.claim_id} was revoked: ask the operator for a new claim"
    await audited(store, claim.claim_id, "denied", "was revoked")
    with pytest.raises(ClaimError, match="revoked already"):
        await claiming.revoke(mesh.home, store, claim.claim_id)


async def test_an_expired_claim_is_refused(mesh: Mesh, store: EventStore, tmp_path: Path) -> None:
    made = datetime.now(UTC) - timedelta(minutes=2)
    created = await new_claim(mesh, store, tmp_path, ttl=timedelta(minutes=1), now=made)
    claim = created.event
    said = await refused_on_the_device(provision(created.path, f"{claim.prefix}0", tmp_path / "device"))
    assert re.fullmatch(f"claim {claim.claim_id} expired at .*: ask for a new one", said)  # its certificate too
    status, why = refusal(await ask(store.nc, claim.claim_id, f"{claim.prefix}0"))
    assert status == 410 and f"claim {claim.claim_id} expired at" in why
    await audited(store, claim.claim_id, "denied", "expired")


async def test_a_flood_is_told_to_slow_down_and_stalls_nothing(
    mesh: Mesh, store: EventStore, claimed: claiming.Created, bootstrap: Bootstrap, tmp_path: Path
) -> None:
    claim = claimed.event
    answers: list[Msg] = []
    all_answered = asyncio.Event()
    flood = 3000

    async def collect(msg: Msg) -> None:
        answers.append(msg)
        if len(answers) == flood:
            all_answered.set()

    inbox = bootstrap.nc.new_inbox()
    await bootstrap.nc.subscribe(inbox, cb=collect)
    body = ENCODER.encode(ProvisionRequest(device_id="not-named", csr_pem="x"))
    for _ in range(flood):  # as fast as the connection takes them, nothing awaited
        await bootstrap.nc.publish(subjects.provision_request(claim.claim_id), body, reply=inbox)
    await bootstrap.nc.flush()

    # Meanwhile another claim's device is provisioned, and a device connects, without waiting behind it.
    other = await new_claim(mesh, store, tmp_path)
    started = time.monotonic()
    await provision(other.path, f"{other.event.prefix}0", tmp_path / "other")
    assert time.monotonic() - started < 5

    await asyncio.wait_for(all_answered.wait(), 30)  # every request answered, none dropped or queued for ever
    codes = [refusal(answer)[0] for answer in answers]
    assert codes.count(429) >= flood - 200  # the burst (40) and the refill (20/s) get through, no more
    assert set(codes) <= {403, 429}
    record = await audited(store, claim.claim_id, "denied", "slow down")
    assert record.details["refused"] >= 1
    records = [s.event async for s in store.read(subjects.audit("identity", claim.claim_id))]
    throttled = sum(1 for r in records if isinstance(r, AuditRecorded) and "slow" in str(r.details.get("reason")))
    assert throttled <= 5  # a flood's refusals are audited together, not one record each


# --- what a claim's bootstrap identity may do -----------------------------------------------------

FORBIDDEN = [
    ("publish", "mesh.provision.claim-someone", "asking with another claim"),
    ("publish", "mesh.evt.claim.{me}.provisioned", "recording a use of its own claim"),
    ("publish", "mesh.evt.device.someone.telemetry", "a device's events"),
    ("publish", "mesh.cmd.someone.c-9", "sending commands"),
    ("publish", "$JS.API.STREAM.INFO.EVENTS", "the JetStream API"),
    ("publish", "$SYS.REQ.SERVER.PING", "the system account"),
    ("publish", "mesh.q.devices.list", "querying the read models"),
    ("publish", "mesh.ctl.projections.rebuild", "asking up to rebuild"),
    ("publish", "mesh.shell.open", "asking for a terminal"),
    ("publish", "$SRV.PING", "discovering services"),
    ("publish", "_INBOX_someone.x", "answering into another's inbox"),
    ("subscribe", "mesh.provision.>", "hearing other devices' requests"),
    ("subscribe", "_INBOX.>", "the shared inbox"),
    ("subscribe", "_INBOX_someone.>", "another's inbox"),
    ("subscribe", "mesh.evt.>", "reading events"),
    ("subscribe", "$SYS.>", "system events"),
    ("subscribe", ">", "everything"),
]


@pytest.mark.parametrize(("action", "subject", "what"), FORBIDDEN, ids=[f[2] for f in FORBIDDEN])
async def test_a_claim_may_only_ask_for_its_certificate(
    mesh: Mesh, claimed: claiming.Created, bootstrap: Bootstrap, action: str, subject: str, what: str
) -> None:
    subject = subject.format(me=claimed.event.claim_id)
    if action == "publish":
        await bootstrap.nc.publish(subject, b"{}")
    else:
        await bootstrap.nc.subscribe(subject)
    await bootstrap.nc.flush()
    await eventually(
        lambda: any(subject.lower() in v.lower() for v in bootstrap.violations()),
        timeout=10,
        what=f"a denial of {what}: {bootstrap.errors}",
    )
    server_side = "Publish Violation" if action == "publish" else "Subscription Violation"
    await eventually(
        lambda: any(server_side in line and subject in line for line in mesh.server.recent),
        timeout=10,
        what=f"the server to log the {server_side}",
    )


async def test_a_large_request_is_refused_unread(claimed: claiming.Created, bootstrap: Bootstrap) -> None:
    reply = await bootstrap.nc.request(subjects.provision_request(claimed.event.claim_id), b"x" * (64 * 1024))
    status, why = refusal(reply)
    assert status == 413 and "at most 16384 bytes" in why


# --- claim files a device cannot use --------------------------------------------------------------


def rewrite(path: Path, **changes: Any) -> Path:
    document = json.loads(path.read_text())
    document.update(changes)
    changed = path.with_name(f"changed-{uuid.uuid4().hex[:6]}.json")
    changed.write_text(json.dumps(document))
    return changed


async def test_a_malformed_foreign_or_altered_claim_file_is_one_line(
    mesh: Mesh, store: EventStore, claimed: claiming.Created, tmp_path: Path
) -> None:
    from certs import CertificateAuthority

    path, claim = claimed.path, claimed.claim
    device = f"{claimed.event.prefix}0"
    another = await new_claim(mesh, store, tmp_path)
    stranger = CertificateAuthority.init(tmp_path / "stranger-ca")
    theirs = stranger.issue_client(claim.claim_id, kind="claim", out_dir=tmp_path / "stranger")
    assert theirs.key_path is not None
    foreign = {
        "ca_pem": theirs.ca_path.read_text(),
        "cert_pem": theirs.cert_path.read_text(),
        "key_pem": theirs.key_path.read_text(),
    }
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "toml.json").write_text('device_id = "x"\n')
    cases = {
        tmp_path / "garbage.json": "is not a claim file (not JSON)",
        tmp_path / "toml.json": "is not a claim file (not JSON)",
        rewrite(path, format="other/1"): "is not a claim file",
        rewrite(path, cert_pem=""): "has no cert_pem",
        rewrite(path, claim_id=another.event.claim_id): f"its certificate is not claim {another.event.claim_id}'s",
        rewrite(path, cert_pem=another.claim.cert_pem): "its certificate is not claim",
        rewrite(path, key_pem=another.claim.key_pem): "its key is not its certificate's",
        rewrite(path, cert_pem=foreign["cert_pem"], key_pem=foreign["key_pem"]): "not signed by its CA",
        rewrite(path, **foreign): "is not the claim's mesh",  # whole and consistent, but of another CA
        tmp_path / "missing.json": "cannot read the claim file",
    }
    for file, expected in cases.items():
        said = await refused_on_the_device(provision(file, device, tmp_path / f"device-{uuid.uuid4().hex[:6]}"))
        assert expected in said and "\n" not in said, (file.name, said)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"claim_id": "claim-0000000000"}, "its certificate is not claim claim-0000000000's"),
        ({"format": "nope"}, "is not a claim file"),
    ],
)
def test_without_cryptography_the_claim_file_is_checked_by_openssl(
    claimed: claiming.Created, tmp_path: Path, change: dict[str, str], said: str
) -> None:
    altered = rewrite(claimed.path, **change)
    made = agent_process("agent", "provision", "--claim", str(altered), "--id", "x-0", "--out", str(tmp_path / "d"))
    _, err = made.communicate(timeout=60)
    assert made.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and said in lines[0], err
