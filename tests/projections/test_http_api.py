"""The HTTP door on a real server: bearer tokens, roles, the same answers as NATS, its OpenAPI, the dashboard.

The queries are asked over plain HTTP (`[http] tls = false`); the browser loads the
dashboard over HTTPS, the default, with a token and no client certificate. Client
certificates are tested in tests/mahavishnu/runtime/test_http_door.py, with the CA registry.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from core.events import CommandIssued, DeviceEnrolled, DeviceHeartbeat, DeviceTagged
from core.metrics import new_registry
from core.probes import ProbeServer, ServerTLS
from core.store import EventStore
from projections import http_api, http_auth
from projections.admission import Admission
from projections.authz import Caller, Refusal
from projections.catalog import CATALOG
from projections.devices import Devices
from projections.queries import ReadModels
from projections.runner import ProjectionRunner
from tests.harness import Mesh
from tests.projections.browser import CAN_BROWSE, Tables, dump_dom
from tests.waiting import eventually

KEY = secrets.token_hex(32)
PEOPLE = {
    "t-viewer": Caller("ann", "viewer"),
    "t-auditor": Caller("bob", "auditor"),
    "t-admin": Caller("carol", "admin"),
}
AUTHENTICATE = http_auth.authenticator(
    by_token=PEOPLE.get, by_certificate=lambda pem: Refusal(401, "no certificates in this test")
)


def server_tls(mesh: Mesh) -> ServerTLS:
    server = mesh.home.server_dir
    return ServerTLS(server / "cert.pem", server / "key.pem", client_ca=mesh.home.ca_dir / "ca.pem")


@pytest.fixture
async def api(
    store: EventStore, mesh: Mesh, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[str, str]]:
    """The door with a device, a command and an audit entry; over HTTPS when parametrized with "https"."""
    tls = server_tls(mesh) if getattr(request, "param", "http") == "https" else None
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await store.append(
        DeviceEnrolled(device_id=device, serial="ab", fingerprint_sha256="f", not_after=datetime.now(UTC))
    )
    await store.audit.record(actor="control", category="identity", action="device.enroll", target=device)
    await store.append(CommandIssued(command_id=f"c-{device}", device_id=device, name="reboot-now"))
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    server = ProbeServer(
        "127.0.0.1",
        0,
        new_registry(),
        ready=lambda: True,
        routes=http_api.routes(ReadModels(tmp_path, KEY, store), authenticate=AUTHENTICATE, audit=store.audit),
        tls=tls,
    )
    await server.start()
    yield f"{server.scheme}://127.0.0.1:{server.port}", device
    await server.stop()


async def get(url: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as client:
        return await client.get(url, headers=headers)


async def test_a_viewer_reads_devices_and_commands(api: tuple[str, str]) -> None:
    base, device = api
    listing = await get(f"{base}/api/devices", "t-viewer")
    assert listing.status_code == 200 and device in [d["device_id"] for d in listing.json()["devices"]]
    one = await get(f"{base}/api/devices/{device}", "t-viewer")
    assert one.json()["status"] == "enrolled"
    mine = (await get(f"{base}/api/commands?device={device}&limit=5", "t-viewer")).json()["commands"]
    assert [c["command_id"] for c in mine] == [f"c-{device}"]
    recent = (await get(f"{base}/api/commands?limit=1", "t-viewer")).json()["commands"]
    assert [(c["command_id"], c["name"]) for c in recent] == [(f"c-{device}", "reboot-now")]  # across devices


async def test_a_viewer_pages_through_the_devices_with_filters(
    store: EventStore, api: tuple[str, str], tmp_path: Path
) -> None:
    base, _ = api
    batch = uuid.uuid4().hex[:8]
    names = [f"dev-{batch}-{n}" for n in range(5)]
    for n, name in enumerate(names):
        site = "north" if n % 2 == 0 else ""
        enrolment = DeviceEnrolled(
            device_id=name, serial="ab", fingerprint_sha256="f", not_after=datetime.now(UTC), site=site
        )
        await store.append([enrolment, DeviceTagged(device_id=name, tags={"batch": batch})])
    await store.append(DeviceHeartbeat(device_id=names[1], uptime_s=1.0))
    runner = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY)  # the fixture's file, caught up
    await runner.open()
    await runner.catch_up()
    await runner.close()

    seen, after = [], ""
    for _ in range(5):
        answer = await get(f"{base}/api/devices?tag=batch={batch}&limit=2&after={after}", "t-viewer")
        assert answer.status_code == 200, answer.text
        seen += [d["device_id"] for d in answer.json()["devices"]]
        after = answer.json()["next"]
        if after is None:
            break
    assert seen == names
    north = (await get(f"{base}/api/devices?tag=batch={batch}&site=north", "t-viewer")).json()
    assert ([d["device_id"] for d in north["devices"]], north["next"]) == (names[::2], None)
    online = (await get(f"{base}/api/devices?tag=batch={batch}&presence=online&transport=agent", "t-viewer")).json()
    assert [(d["device_id"], d["presence"], d["tags"]) for d in online["devices"]] == [
        (names[1], "online", {"batch": batch})
    ]


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("limit=0", "limit must be 1..1000"),
        ("limit=many", "Expected `int`"),
        ("presence=maybe", "Invalid enum value 'maybe' - at `$.presence`"),
        ("transport=pigeon", "Invalid enum value 'pigeon' - at `$.transport`"),
        ("site=North%20Site", "at `$.site`"),
        ("tag=rack", "tag 'rack' is not key=value"),
        ("colour=red", "unknown field `colour`"),
    ],
)
async def test_a_bad_device_filter_is_400_naming_it(api: tuple[str, str], query: str, words: str) -> None:
    answer = await get(f"{api[0]}/api/devices?{query}", "t-viewer")
    assert answer.status_code == 400
    assert words in answer.json()["error"]


async def test_a_viewer_sees_how_far_behind_the_read_models_are(api: tuple[str, str]) -> None:
    answer = await get(f"{api[0]}/api/projections", "t-viewer")
    assert answer.status_code == 200
    models = {m["name"]: m for m in answer.json()["read_models"]}
    assert set(models) == set(CATALOG)
    assert all(m["built"] and m["parked"] == 0 for m in models.values())
    assert models["commands"]["positions"]["mesh.cmd.>"] > 0


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        ("/api/devices", None, 401),
        ("/api/devices", "not-a-token", 401),
        ("/api/commands?device=d", "t-auditor", 403),
        ("/api/projections", "t-auditor", 403),
        ("/api/devices/nobody", "t-viewer", 404),
        ("/api/commands?device=d&limit=0", "t-viewer", 400),
        ("/api/commands?device=d&limit=many", "t-viewer", 400),
        ("/api/commands?limit=1001", "t-viewer", 400),
    ],
)
async def test_refusals_have_their_status(api: tuple[str, str], path: str, token: str | None, status: int) -> None:
    answer = await get(api[0] + path, token)
    assert answer.status_code == status
    assert answer.json()["error"]


async def test_without_a_credential_the_answer_names_both_ways_in(api: tuple[str, str]) -> None:
    answer = await get(f"{api[0]}/api/devices")
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert "client certificate" in answer.json()["error"] and "Authorization: Bearer" in answer.json()["error"]


async def test_an_auditor_searches_the_audit_trail(api: tuple[str, str]) -> None:
    base, device = api
    found = await get(f"{base}/api/audit?device={device}&action=device.enroll", "t-auditor")
    assert [e["target"] for e in found.json()["entries"]] == [device]


async def test_the_openapi_document_describes_every_path(api: tuple[str, str]) -> None:
    document = (await get(f"{api[0]}/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == set(http_api.PATHS)
    get_device = document["paths"]["/api/devices/{id}"]["get"]
    assert {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}} in get_device["parameters"]
    assert get_device["security"] == [{"bearer": []}]  # plain HTTP: tokens only
    with_certificates = http_api.openapi(client_certificates=True)
    assert with_certificates["components"]["securitySchemes"]["operator_certificate"]["type"] == "mutualTLS"
    assert with_certificates["paths"]["/api/projections"]["get"]["security"] == [
        {"bearer": []},
        {"operator_certificate": []},
    ]


@pytest.mark.skipif(not CAN_BROWSE, reason="needs Debian's chromium")
@pytest.mark.parametrize("api", ["https"], indirect=True)  # the default; the browser has a token, no certificate
async def test_the_dashboard_shows_the_fleet_in_a_real_browser(
    api: tuple[str, str], mesh: Mesh, tmp_path: Path
) -> None:
    base, device = api
    assert base.startswith("https://")
    shown = await dump_dom(f"{base}/#token=t-admin", tmp_path / "profile", mesh.home.server_dir / "cert.pem")
    assert 'data-loaded="yes"' in shown, shown[:3000]
    tables = Tables(shown).rows
    assert [device, "never seen", "never", "enrolled"] in [row[:4] for row in tables["devices"]]
    # the fleet's recent commands, not one device's: this device's command is the newest
    assert tables["commands"][0][1:4] == [device, "reboot-now", "issued"], tables["commands"]
    lag = {row[0]: row for row in tables["lag"]}
    assert set(lag) == set(CATALOG), tables["lag"]
    assert "mesh.evt.device.> at " in lag["devices"][1] and lag["devices"][2:] == ["0", "0.0", "0"]
    assert "device.enroll" in [row[3] for row in tables["audit"]]  # the audit tail


class HeldTrail:
    """An audit trail whose first record waits until released: its query holds the door's only slot."""

    def __init__(self) -> None:
        self.records: list[dict[str, object]] = []
        self.release = asyncio.Event()

    async def record(self, **entry: object) -> None:
        self.records.append(entry)
        if len(self.records) == 1:
            await self.release.wait()


async def test_a_caller_with_too_many_queries_waiting_gets_429_and_the_refusal_is_audited(
    store: EventStore, tmp_path: Path
) -> None:
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    trail = HeldTrail()
    admission = Admission(slots=1, per_caller=1, total=10)
    server = ProbeServer(
        "127.0.0.1",
        0,
        new_registry(),
        ready=lambda: True,
        routes=http_api.routes(
            ReadModels(tmp_path, KEY, store),
            authenticate=AUTHENTICATE,
            audit=trail,  # type: ignore[arg-type]
            admission=admission,
        ),
    )
    await server.start()
    base = f"http://127.0.0.1:{server.port}/api/audit"
    try:
        running = asyncio.create_task(get(base, "t-auditor"))  # holds the slot while its record is held
        await eventually(lambda: len(trail.records) == 1, timeout=10, what="the first query's audit record")
        waiting = asyncio.create_task(get(base, "t-auditor"))  # waits in bob's line
        await eventually(lambda: admission.waiting == 1, timeout=10, what="the second query waiting")
        refused = await get(base, "t-auditor")
        trail.release.set()
        first, second = await asyncio.gather(running, waiting)
    finally:
        await server.stop()
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert "bob has 1 queries waiting already" in refused.json()["error"]
    assert [r["outcome"] for r in trail.records] == ["ok", "refused", "ok"]
    assert trail.records[1]["details"] == {"role": "auditor", "auth": "token", "status": 429, "door": "http"}
    assert (first.status_code, second.status_code) == (200, 200)
