"""Who may query: the caller comes from the connection (Nats-Request-Info), and each role sees what it may."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from core import subjects
from core.events import AuditRecorded
from core.store import EventStore, Identity, connect
from mahavishnu.control import operators
from projections.catalog import CATALOG
from projections.queries import ReadModels
from projections.query_service import start_query_service
from projections.runner import ProjectionRunner
from tests.harness import Mesh
from tests.waiting import eventually, wait_until

KEY = secrets.token_hex(32)


def reloads(mesh: Mesh) -> int:
    return sum("Reloaded server configuration" in line for line in mesh.server.recent)


async def person(mesh: Mesh, folder: Path, identity: str, role: str) -> Client:
    before = reloads(mesh)
    issued = operators.add(mesh.home, mesh.settings, identity, role, out_dir=folder / identity)
    wait_until(lambda: reloads(mesh) > before, timeout=10, what="the reload")
    assert issued.key_path is not None
    return await connect(
        Identity(mesh.identity.url, issued.ca_path, issued.cert_path, issued.key_path),
        name=identity,
        reconnect=False,
        inbox_prefix=subjects.inbox_prefix(identity),
    )


@pytest.fixture(scope="module")
def people_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("people")


@pytest.fixture
async def service(store: EventStore, nc: Client, mesh: Mesh, tmp_path: Path) -> AsyncIterator[None]:
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.close()
    running = await start_query_service(
        nc,
        ReadModels(tmp_path, KEY, store),
        version="0.1.0",
        resolve=operators.resolver(mesh.home),
        audit=store.audit,
    )
    yield
    await running.stop()


async def query(client: Client, subject: str, body: bytes = b"") -> tuple[bytes, dict[str, str]]:
    reply = await client.request(subject, body, timeout=5)
    return reply.data, dict(reply.headers or {})


async def test_a_viewer_reads_the_fleet(service: None, mesh: Mesh, people_folder: Path) -> None:
    viewer = await person(mesh, people_folder, "ops-viewer", "viewer")
    try:
        data, headers = await query(viewer, "mesh.q.devices.list")
        lag, lag_headers = await query(viewer, "mesh.q.projections.status")
    finally:
        await viewer.close()
    assert "Nats-Service-Error-Code" not in headers
    assert "devices" in json.loads(data)
    assert "Nats-Service-Error-Code" not in lag_headers  # a viewer may see how far behind the read models are
    assert {m["name"] for m in json.loads(lag)["read_models"]} == set(CATALOG)


async def test_an_auditor_is_refused_the_fleet_and_told_why(
    service: None, mesh: Mesh, store: EventStore, people_folder: Path
) -> None:
    auditor = await person(mesh, people_folder, "ops-auditor", "auditor")
    try:
        _, headers = await query(auditor, "mesh.q.commands.list", b'{"device": "d"}')
    finally:
        await auditor.close()
    assert headers["Nats-Service-Error-Code"] == "403"
    assert headers["Nats-Service-Error"] == "ops-auditor (auditor) may not run commands.list"
    [last] = [s.event async for s in store.read("mesh.audit.query.ops-auditor")][-1:]
    assert isinstance(last, AuditRecorded)
    assert (last.action, last.outcome) == ("commands.list", "denied")  # a denial is itself an audit event


async def test_the_body_cannot_claim_an_identity(service: None, mesh: Mesh, people_folder: Path) -> None:
    auditor = await person(mesh, people_folder, "ops-sneaky", "auditor")
    try:
        _, headers = await query(auditor, "mesh.q.commands.list", b'{"user": "control", "role": "admin"}')
    finally:
        await auditor.close()
    assert headers["Nats-Service-Error-Code"] == "403"


async def test_an_operator_can_do_nothing_but_query(mesh: Mesh, people_folder: Path) -> None:
    errors: list[str] = []
    before = reloads(mesh)
    issued = operators.add(mesh.home, mesh.settings, "ops-curious", "admin", out_dir=people_folder / "ops-curious")
    wait_until(lambda: reloads(mesh) > before, timeout=10, what="the reload")

    async def collect(error: Exception) -> None:
        errors.append(str(error).lower())

    assert issued.key_path is not None
    client = await connect(
        Identity(mesh.identity.url, issued.ca_path, issued.cert_path, issued.key_path),
        name="ops-curious",
        reconnect=False,
        error_cb=collect,
        inbox_prefix=subjects.inbox_prefix("ops-curious"),
    )
    try:
        await client.publish("mesh.evt.device.x.telemetry", b"{}")
        await client.subscribe("mesh.evt.>")
        await client.flush()
        await eventually(
            lambda: len([e for e in errors if "permissions violation" in e]) >= 2,
            timeout=10,
            what=f"both denials: {errors}",
        )
    finally:
        await client.close()


async def test_the_control_services_query_from_inside_the_mesh(service: None, nc: Client) -> None:
    data, headers = await query(nc, "mesh.q.devices.list")
    assert "Nats-Service-Error-Code" not in headers
    assert "devices" in json.loads(data)
