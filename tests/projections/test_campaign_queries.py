"""campaigns.list and campaigns.get on a real mesh, through both doors, for every role (and none)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from core.campaigns.ids import new_campaign_id
from core.campaigns.states import ExecutionState
from core.events import AuditRecorded
from core.metrics import new_registry
from core.probes import ProbeServer
from core.store import EventStore
from mahavishnu.control import operators
from projections import http_api, http_auth
from projections.authz import Caller, Refusal
from projections.campaigns import Campaigns
from projections.queries import ReadModels
from projections.query_service import start_query_service
from projections.runner import ProjectionRunner
from tests.harness import Mesh
from tests.projections.campaign_life import aborted, executions, paused, started
from tests.projections.test_authorization import person

KEY = secrets.token_hex(32)
TOKENS = {"t-viewer": Caller("ann", "viewer"), "t-nobody": Caller("dan", "")}
AUTHENTICATE = http_auth.authenticator(by_token=TOKENS.get, by_certificate=lambda pem: Refusal(401, "no certificates"))


@dataclass
class Door:
    base: str  # the HTTP door's URL
    running: str  # three campaigns, created in this order
    stalled: str
    stopped: str


@pytest.fixture
async def door(store: EventStore, nc: Client, mesh: Mesh, tmp_path: Path) -> AsyncIterator[Door]:
    running, stalled, stopped = new_campaign_id(), new_campaign_id(), new_campaign_id()
    fleet = [f"dev-{n:03d}" for n in range(30)]
    await store.append_many(
        [
            *started(running, fleet, name="first"),
            *executions(running, fleet[:5], 0, ExecutionState.SUCCEEDED),
            *started(stalled, fleet, name="second", waves=1),
            *executions(stalled, fleet[:2], 0, ExecutionState.REJECTED),
            paused(stalled),
            *started(stopped, fleet, name="third"),
            *executions(stopped, fleet[:3], 0, ExecutionState.FAILED),
            aborted(stopped),
        ]
    )
    runner = ProjectionRunner(Campaigns(), store, directory=tmp_path, key=KEY)
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
    yield Door(f"http://127.0.0.1:{server.port}", running, stalled, stopped)
    await server.stop()
    await queries.stop()


async def ask(client: Client, query: str, body: dict[str, Any] | None = None) -> tuple[Any, dict[str, str]]:
    reply = await client.request(f"mesh.q.{query}", json.dumps(body or {}).encode(), timeout=5)
    return (json.loads(reply.data) if reply.data else None), dict(reply.headers or {})


async def test_the_list_pages_newest_first_with_a_cursor_and_filters_by_status(door: Door, nc: Client) -> None:
    first, _ = await ask(nc, "campaigns.list", {"limit": 2})
    assert [c["id"] for c in first["campaigns"]] == [door.stopped, door.stalled] and first["next"] == door.stalled
    second, _ = await ask(nc, "campaigns.list", {"limit": 1, "after": first["next"]})
    assert [c["id"] for c in second["campaigns"]] == [door.running]
    assert second["campaigns"][0] == {
        "id": door.running,
        "name": "first",
        "status": "running",
        "counts": {
            "pending": 25,
            "queued": 0,
            "in_progress": 0,
            "succeeded": 5,
            "failed": 0,
            "timed_out": 0,
            "rejected": 0,
            "removed": 0,
            "canceled": 0,
        },
        "rule": "",
        "created_at": second["campaigns"][0]["created_at"],
        "created_by": "ann",
    }
    only, _ = await ask(nc, "campaigns.list", {"status": "paused"})
    assert door.stalled in [c["id"] for c in only["campaigns"]]
    assert {c["status"] for c in only["campaigns"]} == {"paused"}


async def test_get_answers_counts_per_state_per_wave_and_the_rule_that_fired(door: Door, nc: Client) -> None:
    found, _ = await ask(nc, "campaigns.get", {"id": door.stopped})
    campaign = found["campaign"]
    assert (campaign["id"], campaign["name"], campaign["status"]) == (door.stopped, "third", "aborted")
    assert campaign["rule"] == "abort[0]: failed 15.2% >= 10% of 105 executed"
    assert (campaign["counts"]["failed"], campaign["counts"]["pending"]) == (3, 27)
    assert [(w["wave"], w["name"], w["open"], w["targets"], w["failed"]) for w in campaign["waves"]] == [
        (0, "wave 0", True, 15, 3),
        (1, "wave 1", False, 15, 0),
    ]
    assert campaign["spec"]["document"] == {"command": {"name": "reboot"}}
    assert campaign["started_at"] and campaign["ended_at"] is None and campaign["created_by"] == "ann"
    assert {"reason", "created_at"} <= set(campaign)


async def test_an_unknown_or_malformed_id_and_a_bad_page_are_refused_in_one_line(door: Door, nc: Client) -> None:
    _, unknown = await ask(nc, "campaigns.get", {"id": "cp-000000000000"})
    assert unknown["Nats-Service-Error-Code"] == "404"
    assert unknown["Nats-Service-Error"] == "no campaign 'cp-000000000000': `mahavishnu campaign list` lists them"
    _, malformed = await ask(nc, "campaigns.get", {"id": "reboot"})
    assert malformed["Nats-Service-Error-Code"] == "400" and "not a campaign id" in malformed["Nats-Service-Error"]
    _, cursor = await ask(nc, "campaigns.list", {"after": "cp-000000000000"})
    assert cursor["Nats-Service-Error-Code"] == "400" and "start again" in cursor["Nats-Service-Error"]
    _, status = await ask(nc, "campaigns.list", {"status": "sleeping"})
    assert status["Nats-Service-Error-Code"] == "400" and "status" in status["Nats-Service-Error"]
    _, limit = await ask(nc, "campaigns.list", {"limit": 0})
    assert limit["Nats-Service-Error-Code"] == "400" and "1..1000" in limit["Nats-Service-Error"]


async def test_the_http_door_answers_the_same(door: Door, nc: Client) -> None:
    headers = {"Authorization": "Bearer t-viewer"}
    async with httpx.AsyncClient(base_url=door.base, headers=headers) as client:
        listing = await client.get("/api/campaigns", params={"limit": 2, "status": "aborted"})
        one = await client.get(f"/api/campaigns/{door.stopped}")
        missing = await client.get("/api/campaigns/cp-000000000000")
        nobody = await client.get("/api/campaigns", headers={"Authorization": "Bearer t-nobody"})
    assert listing.status_code == 200 and door.stopped in [c["id"] for c in listing.json()["campaigns"]]
    assert one.json() == (await ask(nc, "campaigns.get", {"id": door.stopped}))[0]
    assert missing.status_code == 404 and "no campaign" in missing.json()["error"]
    assert nobody.status_code == 403 and nobody.json()["error"] == "dan () may not run campaigns.list"
    assert {"/api/campaigns", "/api/campaigns/{id}"} <= set(http_api.openapi()["paths"])


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("people")


@pytest.mark.parametrize("role", ["operator", "viewer", "auditor", "admin"])
async def test_every_role_reads_campaigns(door: Door, mesh: Mesh, people: Path, role: str) -> None:
    client = await person(mesh, people, f"camp-{role}", role)
    try:
        listing, listed = await ask(client, "campaigns.list", {"limit": 1})
        one, got = await ask(client, "campaigns.get", {"id": door.running})
    finally:
        await client.close()
    assert "Nats-Service-Error-Code" not in listed and "Nats-Service-Error-Code" not in got
    assert [c["id"] for c in listing["campaigns"]] == [door.stopped] and one["campaign"]["name"] == "first"


async def test_a_caller_with_no_role_is_refused_and_the_refusal_audited(
    door: Door, mesh: Mesh, store: EventStore, people: Path
) -> None:
    client = await person(mesh, people, "camp-nobody", "viewer")
    roles = json.loads(mesh.home.roles_file.read_text())
    del roles["camp-nobody"]  # its certificate still opens the mesh; its role is gone
    mesh.home.roles_file.write_text(json.dumps(roles))
    try:
        _, headers = await ask(client, "campaigns.get", {"id": door.running})
    finally:
        await client.close()
    assert headers["Nats-Service-Error-Code"] == "403"
    assert headers["Nats-Service-Error"] == "an unknown caller may not run campaigns.get"
    [last] = [s.event async for s in store.read("mesh.audit.query.unknown")][-1:]
    assert isinstance(last, AuditRecorded) and (last.action, last.outcome) == ("campaigns.get", "denied")
