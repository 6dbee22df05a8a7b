"""artifacts.list|get and updates.compliance on a real mesh, through both doors, for every role."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from core.events import (
    ArtifactAdded,
    ArtifactRemoved,
    CommandFailed,
    CommandIssued,
    CommandRunning,
    CommandSucceeded,
    ReportedState,
)
from core.metrics import UpdateMetrics, new_registry
from core.probes import ProbeServer
from core.store import EventStore
from core.updates.states import INSTALL_COMMAND
from mahavishnu.control import operators
from mahavishnu.observability import update_compliance
from projections import http_api, http_auth
from projections.authz import Caller, Refusal
from projections.commands import Commands
from projections.queries import ReadModels
from projections.query_service import start_query_service
from projections.runner import ProjectionRunner
from projections.updates.queries import device_software
from projections.updates.readmodel import Updates
from tests.harness import Mesh
from tests.projections.test_authorization import person
from tests.waiting import eventually

KEY = secrets.token_hex(32)
TOKENS = {"t-viewer": Caller("ann", "viewer")}
AUTHENTICATE = http_auth.authenticator(by_token=TOKENS.get, by_certificate=lambda pem: Refusal(401, "no certificates"))


def added(name: str, version: str, device_type: str = "pump") -> ArtifactAdded:
    return ArtifactAdded(name=name, version=version, device_type=device_type, length=100, sha256="ab" * 32, actor="ann")


def update(device: str, command_id: str, version: str) -> CommandIssued:
    args = {"name": "pump-fw", "version": version, "allow_downgrade": False}
    return CommandIssued(command_id=command_id, device_id=device, name=INSTALL_COMMAND, args=args, actor="ann")


@pytest.fixture
async def door(store: EventStore, nc: Client, mesh: Mesh, tmp_path: Path) -> AsyncIterator[str]:
    def software(device: str, **versions: str) -> ReportedState:
        return ReportedState(device_id=device, state={"rate": 5, "software": versions}, actor=device)

    await store.append_many(
        [
            added("pump-fw", "1.9.0"),
            added("pump-fw", "1.10.0"),
            added("pump-fw", "2.0.0-rc.1"),
            ArtifactRemoved(name="pump-fw", version="2.0.0-rc.1", reason="withdrawn", actor="ann"),
            added("sensor-fw", "3", device_type="sensor"),
            software("p-1", **{"pump-fw": "1.9.0"}),
            software("p-1", **{"pump-fw": "1.10.0"}),  # the whole truth each time: replaces
            software("p-2", **{"pump-fw": "1.9.0"}),
            software("p-3", **{"pump-fw": "1.9.0"}),
            software("s-1", **{"sensor-fw": "3"}),
            update("p-2", "u-2", "1.10.0"),
            CommandRunning(command_id="u-2", device_id="p-2", actor="p-2"),
            update("p-3", "u-3", "1.10.0"),
            CommandFailed(command_id="u-3", device_id="p-3", error="update refused (hash): ...", actor="p-3"),
            update("p-1", "u-1", "1.10.0"),
            CommandSucceeded(command_id="u-1", device_id="p-1", result={"state": "committed"}, actor="p-1"),
        ]
    )
    for model in (Updates(), Commands()):
        runner = ProjectionRunner(model, store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    models = ReadModels(tmp_path, KEY, store)
    queries = await start_query_service(
        nc, models, version="0.1.0", resolve=operators.resolver(mesh.home), audit=store.audit
    )
    server = ProbeServer(
        "127.0.0.1",
        0,
        new_registry(process_metrics=False),
        ready=lambda: True,
        routes=http_api.routes(models, authenticate=AUTHENTICATE, audit=store.audit),
    )
    await server.start()
    yield f"http://127.0.0.1:{server.port}"
    await server.stop()
    await queries.stop()


async def ask(client: Client, query: str, body: dict[str, Any] | None = None) -> tuple[Any, dict[str, str]]:
    reply = await client.request(f"mesh.q.{query}", json.dumps(body or {}).encode(), timeout=5)
    return (json.loads(reply.data) if reply.data else None), dict(reply.headers or {})


async def test_artifacts_list_newest_version_first_and_the_removed_only_on_ask(door: str, nc: Client) -> None:
    listing, _ = await ask(nc, "artifacts.list")
    assert [(a["name"], a["version"]) for a in listing["artifacts"]] == [
        ("pump-fw", "1.10.0"),
        ("pump-fw", "1.9.0"),
        ("sensor-fw", "3"),
    ]
    everything, _ = await ask(nc, "artifacts.list", {"name": "pump-fw", "removed": True})
    assert [a["version"] for a in everything["artifacts"]] == ["2.0.0-rc.1", "1.10.0", "1.9.0"]
    assert everything["artifacts"][0]["removed_at"] is not None
    one, _ = await ask(nc, "artifacts.get", {"name": "sensor-fw", "version": "3"})
    assert one["artifact"] | {"added_at": None} == {
        "name": "sensor-fw",
        "version": "3",
        "device_type": "sensor",
        "length": 100,
        "sha256": "ab" * 32,
        "depends": [],
        "filename": None,
        "added_at": None,
        "added_by": "ann",
        "removed_at": None,
    }


async def test_compliance_counts_latest_pending_failed_and_outdated(door: str, nc: Client) -> None:
    found, _ = await ask(nc, "updates.compliance")
    assert found["artifacts"] == [
        {
            "name": "pump-fw",
            "latest": "1.10.0",
            "devices": {"latest": 1, "pending": 1, "failed": 1, "outdated": 0},
            "total": 3,
        },
        {
            "name": "sensor-fw",
            "latest": "3",
            "devices": {"latest": 1, "pending": 0, "failed": 0, "outdated": 0},
            "total": 1,
        },
    ]
    only, _ = await ask(nc, "updates.compliance", {"name": "sensor-fw"})
    assert [a["name"] for a in only["artifacts"]] == ["sensor-fw"]


async def test_bad_requests_are_refused_in_one_line(door: str, nc: Client) -> None:
    _, unknown = await ask(nc, "artifacts.get", {"name": "pump-fw", "version": "9"})
    assert unknown["Nats-Service-Error-Code"] == "404"
    assert unknown["Nats-Service-Error"] == "no artifact pump-fw@9: `mahavishnu artifact list` lists them"
    _, bad = await ask(nc, "updates.compliance", {"name": "Pump FW"})
    assert bad["Nats-Service-Error-Code"] == "400" and "artifact name 'Pump FW'" in bad["Nats-Service-Error"]


async def test_the_http_door_answers_the_same(door: str, nc: Client) -> None:
    async with httpx.AsyncClient(base_url=door, headers={"Authorization": "Bearer t-viewer"}) as client:
        listing = await client.get("/api/artifacts", params={"name": "pump-fw"})
        counted = await client.get("/api/updates/compliance")
    assert listing.json() == (await ask(nc, "artifacts.list", {"name": "pump-fw"}))[0]
    assert counted.json() == (await ask(nc, "updates.compliance"))[0]


@pytest.mark.parametrize("role", ["operator", "viewer", "auditor", "admin"])
async def test_every_role_reads_the_updates(door: str, mesh: Mesh, tmp_path: Path, role: str) -> None:
    client = await person(mesh, tmp_path, f"upd-{role}", role)
    try:
        _, listed = await ask(client, "artifacts.list")
        _, counted = await ask(client, "updates.compliance")
    finally:
        await client.close()
    assert "Nats-Service-Error-Code" not in listed and "Nats-Service-Error-Code" not in counted


async def test_the_compliance_gauge_follows_the_query(door: str, store: EventStore, tmp_path: Path) -> None:
    registry = new_registry(process_metrics=False)
    metrics = UpdateMetrics(registry)
    stop = asyncio.Event()
    models = ReadModels(tmp_path, KEY, store)
    sampling = asyncio.create_task(update_compliance.follow(models, metrics, stop, every=3600))

    def sample(artifact: str, status: str) -> float | None:
        return registry.get_sample_value("mahavishnu_update_devices", {"artifact": artifact, "status": status})

    try:
        await eventually(lambda: sample("pump-fw", "failed") is not None, timeout=10, what="the first sample")
    finally:
        stop.set()
        await sampling
    assert [sample("pump-fw", status) for status in ("latest", "pending", "failed", "outdated")] == [1, 1, 1, 0]
    metrics.show([("sensor-fw", {"latest": 1, "pending": 0, "failed": 0, "outdated": 0})])  # pump-fw removed
    assert sample("pump-fw", "latest") is None and sample("sensor-fw", "latest") == 1


async def test_a_devices_software_names_each_artifacts_version_status_and_last_update(
    door: str, store: EventStore, tmp_path: Path
) -> None:
    models = ReadModels(tmp_path, KEY, store)
    pending = await device_software(models, "p-2")
    assert pending["pump-fw"] | {"update": None} == {
        "version": "1.9.0",
        "latest": "1.10.0",
        "status": "pending",
        "update": None,
    }
    assert {k: pending["pump-fw"]["update"][k] for k in ("version", "state", "command_id")} == {
        "version": "1.10.0",
        "state": "running",
        "command_id": "u-2",
    }
    refused = await device_software(models, "p-3")
    assert refused["pump-fw"]["status"] == "failed"
    assert refused["pump-fw"]["update"]["detail"] == "update refused (hash): ..."
    assert await device_software(models, "s-1") == {
        "sensor-fw": {"version": "3", "latest": "3", "status": "latest", "update": None}
    }
    assert await device_software(models, "nobody") == {}
