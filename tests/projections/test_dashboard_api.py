"""What the dashboard asks the HTTP door for: who am I, the fleet summary, a device's telemetry, and sending a command.

On a real server over the real mesh; a command is sent through the control side's own
`send` (mahavishnu.control.commands.sender), as `up` wires it, so it lands in COMMANDS
and in the audit trail under the operator's name.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.events import AuditRecorded, CommandIssued, DeviceEnrolled, DeviceHeartbeat, DeviceRevoked, TelemetryReported
from core.metrics import new_registry
from core.probes import ProbeServer
from core.store import EventStore
from mahavishnu.control.commands import sender
from projections import http_api, http_auth, http_commands
from projections.authz import Caller, Refusal
from projections.catalog import CATALOG
from projections.queries import ReadModels
from projections.runner import ProjectionRunner

KEY = secrets.token_hex(32)
PEOPLE = {
    "t-viewer": Caller("ann", "viewer"),
    "t-operator": Caller("olga", "operator"),
    "t-auditor": Caller("bob", "auditor"),
    "t-admin": Caller("carol", "admin"),
}
AUTHENTICATE = http_auth.authenticator(
    by_token=PEOPLE.get, by_certificate=lambda pem: Refusal(401, "no certificates in this test")
)


@dataclass
class Door:
    base: str
    device: str
    revoked: str
    store: EventStore

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient() as client:
            return await client.request(method, self.base + path, headers=headers, **kwargs)


@pytest.fixture
async def door(store: EventStore, tmp_path: Path) -> AsyncIterator[Door]:
    """A door that sends commands, over read models holding an online device with telemetry and a revoked one."""
    device, revoked = f"dev-{uuid.uuid4().hex[:8]}", f"dev-{uuid.uuid4().hex[:8]}"
    start = datetime.now(UTC) - timedelta(minutes=5)
    later = datetime.now(UTC) + timedelta(days=1)
    await store.append_many(
        [
            DeviceEnrolled(device_id=device, serial="ab", fingerprint_sha256="f", not_after=later, site="north"),
            DeviceEnrolled(device_id=revoked, serial="ab", fingerprint_sha256="f", not_after=later),
            DeviceRevoked(device_id=revoked, serials=["ab"]),
            *(
                TelemetryReported(
                    device_id=device, metrics={"temp_c": 20.0 + n}, occurred_at=start + timedelta(minutes=n)
                )
                for n in range(4)
            ),
            DeviceHeartbeat(device_id=device, uptime_s=5.0),
        ]
    )
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    routes = http_api.routes(
        ReadModels(tmp_path, KEY, store), authenticate=AUTHENTICATE, audit=store.audit, send_command=sender(store)
    )
    server = ProbeServer("127.0.0.1", 0, new_registry(), ready=lambda: True, routes=routes)
    await server.start()
    yield Door(f"http://127.0.0.1:{server.port}", device, revoked, store)
    await server.stop()


async def audited(store: EventStore, actor: str, device: str) -> list[AuditRecorded]:
    found = [s.event async for s in store.read(f"mesh.audit.command.{actor}")]
    return [e for e in found if isinstance(e, AuditRecorded) and e.target == device]


async def test_me_names_the_caller_and_what_its_role_may_run(door: Door) -> None:
    viewer = (await door.call("GET", "/api/me", "t-viewer")).json()
    assert (viewer["identity"], viewer["role"]) == ("ann", "viewer")
    assert {"devices.list", "devices.summary", "telemetry.history"} <= set(viewer["may"])
    assert not {"audit.search", "commands.send"} & set(viewer["may"])
    assert "commands.send" in (await door.call("GET", "/api/me", "t-operator")).json()["may"]
    auditor = (await door.call("GET", "/api/me", "t-auditor")).json()["may"]
    # The devices: for their personal data; the campaigns and updates: what was rolled out, by whom, how it went.
    assert auditor == [
        "artifacts.get",
        "artifacts.list",
        "audit.search",
        "campaigns.get",
        "campaigns.list",
        "devices.get",
        "devices.list",
        "updates.compliance",
    ]
    anonymous = await door.call("GET", "/api/me")
    assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["error"]


async def test_the_fleet_summary_and_a_devices_telemetry(door: Door) -> None:
    summary = (await door.call("GET", "/api/fleet", "t-viewer")).json()
    assert summary["total"]["online"] >= 1 and summary["total"]["revoked"] >= 1
    assert {"site", "devices", "online", "offline", "never_seen", "revoked"} == set(summary["by_site"][0])
    assert any(s["site"] == "north" and s["online"] >= 1 for s in summary["by_site"])
    history = (await door.call("GET", f"/api/devices/{door.device}/telemetry", "t-viewer")).json()
    assert [p["value"] for p in history["metrics"]["temp_c"]] == [20.0, 21.0, 22.0, 23.0]
    last_two = await door.call("GET", f"/api/devices/{door.device}/telemetry?limit=2", "t-viewer")
    assert [p["value"] for p in last_two.json()["metrics"]["temp_c"]] == [22.0, 23.0]
    too_many = await door.call("GET", f"/api/devices/{door.device}/telemetry?limit=501", "t-viewer")
    assert too_many.status_code == 400 and "limit" in too_many.json()["error"]
    denied = await door.call("GET", "/api/fleet", "t-auditor")
    assert denied.status_code == 403 and denied.json()["error"] == "bob (auditor) may not run devices.summary"


async def test_an_operator_sends_a_command_that_is_stored_and_audited_in_its_name(door: Door) -> None:
    sent = await door.call(
        "POST", f"/api/devices/{door.device}/commands", "t-operator", json={"name": "ping", "args": {"n": 1}}
    )
    assert sent.status_code == 202, sent.text
    command_id = sent.json()["command_id"]
    [stored] = [s.event async for s in door.store.read(f"mesh.cmd.{door.device}.{command_id}")]
    assert isinstance(stored, CommandIssued)
    assert (stored.name, stored.args, stored.actor, stored.ttl_s, stored.timeout_s) == (
        "ping",
        {"n": 1},
        "olga",
        30,
        10,
    )
    [record] = await audited(door.store, "olga", door.device)
    assert (record.action, record.outcome, record.details["command_id"]) == ("command.send", "ok", command_id)


async def test_a_viewer_may_not_send_and_the_refusal_is_audited(door: Door) -> None:
    refused = await door.call("POST", f"/api/devices/{door.device}/commands", "t-viewer", json={"name": "ping"})
    assert refused.status_code == 403 and refused.json()["error"] == "ann (viewer) may not send commands"
    [record] = await audited(door.store, "ann", door.device)
    assert (record.action, record.outcome, record.details["role"]) == ("command.send", "denied", "viewer")
    assert [s async for s in door.store.read(f"mesh.cmd.{door.device}.>")] == []


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "no spaces"}, 400, "bad request: Expected `str` matching regex"),
        ({"name": "ping", "ttl_s": 0}, 400, "ttl_s"),
        ({"name": "ping", "args": [1]}, 400, "args"),
        ({"name": "ping", "when": "now"}, 400, "unknown field `when`"),
    ],
)
async def test_a_bad_command_is_refused_naming_what_is_wrong(
    door: Door, body: dict[str, Any], status: int, words: str
) -> None:
    answer = await door.call("POST", f"/api/devices/{door.device}/commands", "t-operator", json=body)
    assert answer.status_code == status and words in answer.json()["error"], answer.text


async def test_a_command_for_no_device_a_revoked_one_or_as_a_form_is_not_sent(door: Door) -> None:
    unknown = await door.call("POST", "/api/devices/dev-nobody/commands", "t-operator", json={"name": "ping"})
    assert unknown.status_code == 404 and "no device 'dev-nobody'" in unknown.json()["error"]
    revoked = await door.call("POST", f"/api/devices/{door.revoked}/commands", "t-operator", json={"name": "ping"})
    assert revoked.status_code == 409 and "is revoked" in revoked.json()["error"]
    # What a page on another site can make a browser send: a form, with the operator's certificate.
    form = await door.call("POST", f"/api/devices/{door.device}/commands", "t-operator", data={"name": "ping"})
    assert form.status_code == 415 and "application/json" in form.json()["error"]
    assert [s async for s in door.store.read(f"mesh.cmd.{door.device}.>")] == []


async def test_the_openapi_document_describes_the_command_post(door: Door) -> None:
    document = (await door.call("GET", "/openapi.json")).json()
    assert set(document["paths"]) == {*http_api.PATHS, http_commands.PATH}
    post = document["paths"][http_commands.PATH]["post"]
    assert post["operationId"] == "commands_send" and "requestBody" in post
    assert http_commands.PATH not in http_api.openapi()["paths"]  # a door without `send` only reads


async def test_the_dashboard_is_served_by_the_door_itself_and_may_load_nothing_from_elsewhere(door: Door) -> None:
    page = await door.call("GET", "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert re.findall(r'src="([^"]+)"', page.text) == ["/dashboard/chart.js", "/dashboard/app.js"]
    for name in ("app.js", "chart.js", "style.css"):
        served = await door.call("GET", f"/dashboard/{name}")
        addresses = set(re.findall(r"https?://[^\s\"'`]+", served.text))
        assert served.status_code == 200 and addresses <= {"http://www.w3.org/2000/svg"}, addresses  # SVG's namespace
    assert (await door.call("GET", "/dashboard/..%2Fhttp_api.py")).status_code == 404
