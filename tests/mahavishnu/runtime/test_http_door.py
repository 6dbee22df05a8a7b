"""The HTTP door over real TLS, as `up` serves it: operators' client certificates beside tokens, the rest refused.

The server is the one `up` builds (mahavishnu.runtime.up.http_api_server) with the mesh's own
server certificate, CA registry and roles; the clients are httpx with real certificates.
"""

from __future__ import annotations

import secrets
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest

from certs import CertificateAuthority
from core.config import HttpSettings
from core.events import AuditRecorded
from core.store import EventStore
from mahavishnu.control import operators, tokens
from mahavishnu.runtime.up import http_api_server
from projections.catalog import CATALOG
from projections.queries import ReadModels
from projections.runner import ProjectionRunner
from tests.harness import Mesh

KEY = secrets.token_hex(32)


@dataclass(frozen=True)
class Holder:
    """Someone with a certificate of the mesh CA: its files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class People:
    viewer: Holder
    auditor: Holder
    revoked: Holder
    device: Holder
    stranger: Holder  # a certificate of another CA


def holder(folder: Path) -> Holder:
    return Holder(folder / "cert.pem", folder / "key.pem")


@pytest.fixture(scope="module")
def people(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory) -> People:
    folder = tmp_path_factory.mktemp("http-people")
    for identity, role in (("http-viewer", "viewer"), ("http-auditor", "auditor"), ("http-gone", "viewer")):
        operators.add(mesh.home, mesh.settings, identity, role, out_dir=folder / identity)
    ca = CertificateAuthority.load(mesh.home.ca_dir)
    ca.revoke("http-gone", reason="key_compromise")
    ca.issue_client("http-dev", kind="device", out_dir=folder / "http-dev")
    other = CertificateAuthority.init(folder / "other-ca")
    other.issue_client("http-viewer", kind="operator", out_dir=folder / "stranger")
    return People(
        viewer=holder(folder / "http-viewer"),
        auditor=holder(folder / "http-auditor"),
        revoked=holder(folder / "http-gone"),
        device=holder(folder / "http-dev"),
        stranger=holder(folder / "stranger"),
    )


@pytest.fixture
async def api(mesh: Mesh, store: EventStore, tmp_path: Path) -> AsyncIterator[str]:
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    settings = msgspec.structs.replace(mesh.settings, http=HttpSettings(port=0, tls=True))  # 0: any free port
    server = http_api_server(mesh.home, settings, ReadModels(tmp_path, KEY, store), store.audit, ready=bool)
    await server.start()
    yield f"https://127.0.0.1:{server.port}"
    await server.stop()


async def get(mesh: Mesh, url: str, who: Holder | None = None, token: str = "") -> httpx.Response:
    """GET over TLS trusting the mesh CA, with `who`'s client certificate and `token` if given."""
    context = ssl.create_default_context(cafile=mesh.home.ca_dir / "ca.pem")
    if who is not None:
        context.load_cert_chain(who.cert, who.key)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(verify=context) as client:
        return await client.get(url, headers=headers)


async def last_query_entry(store: EventStore, actor: str) -> AuditRecorded:
    entries = [s.event async for s in store.read(f"mesh.audit.query.{actor}")]
    assert entries and isinstance(entries[-1], AuditRecorded), entries
    return entries[-1]


async def test_an_operator_certificate_gets_the_answers_of_its_role(
    api: str, mesh: Mesh, store: EventStore, people: People
) -> None:
    devices = await get(mesh, f"{api}/api/devices", people.viewer)
    assert devices.status_code == 200 and "devices" in devices.json()
    lag = await get(mesh, f"{api}/api/projections", people.viewer)
    assert {m["name"] for m in lag.json()["read_models"]} == set(CATALOG)
    audit = await get(mesh, f"{api}/api/audit", people.viewer)
    assert (audit.status_code, audit.json()["error"]) == (403, "http-viewer (viewer) may not run audit.search")
    denied = await last_query_entry(store, "http-viewer")
    assert (denied.action, denied.outcome) == ("audit.search", "denied")
    assert denied.details == {"role": "viewer", "auth": "certificate", "door": "http"}
    trail = await get(mesh, f"{api}/api/audit?limit=5", people.auditor)
    assert trail.status_code == 200 and "entries" in trail.json()


async def test_a_device_certificate_is_refused_and_audited(
    api: str, mesh: Mesh, store: EventStore, people: People
) -> None:
    answer = await get(mesh, f"{api}/api/devices", people.device)
    assert answer.status_code == 403
    assert answer.json()["error"] == "http-dev presented a device certificate: only operators may query"
    entry = await last_query_entry(store, "http-dev")
    assert (entry.action, entry.outcome, entry.details["auth"]) == ("devices.list", "denied", "certificate")


async def test_a_revoked_operator_certificate_is_refused_and_audited(
    api: str, mesh: Mesh, store: EventStore, people: People
) -> None:
    answer = await get(mesh, f"{api}/api/devices", people.revoked)
    assert answer.status_code == 401 and "is revoked" in answer.json()["error"]
    entry = await last_query_entry(store, "http-gone")
    assert (entry.action, entry.outcome) == ("devices.list", "denied")


async def test_without_a_certificate_or_token_the_answer_names_both(api: str, mesh: Mesh) -> None:
    answer = await get(mesh, f"{api}/api/devices")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    error = answer.json()["error"]
    assert "client certificate" in error and "Authorization: Bearer <token>" in error


async def test_tokens_keep_working_over_https(api: str, mesh: Mesh, people: People) -> None:
    token = tokens.issue(mesh.home, "http-auditor")
    assert (await get(mesh, f"{api}/api/audit?limit=1", token=token)).status_code == 200
    both = await get(mesh, f"{api}/api/audit?limit=1", people.auditor, token=token)  # the same operator twice
    assert both.status_code == 200
    mixed = await get(mesh, f"{api}/api/audit?limit=1", people.viewer, token=token)
    assert mixed.status_code == 401 and "names http-viewer but the token http-auditor" in mixed.json()["error"]


async def test_a_certificate_of_another_ca_does_not_get_through_the_handshake(
    api: str, mesh: Mesh, people: People
) -> None:
    # With TLS 1.3 the server checks the client's certificate after the client thinks the handshake
    # is done, so the refusal reaches the client as a closed connection (a ReadError), not an HTTP answer.
    with pytest.raises(httpx.TransportError):
        await get(mesh, f"{api}/api/devices", people.stranger)
