"""The HTTP door on a real server: bearer tokens, roles, the same answers as NATS, its OpenAPI, the dashboard."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from core.audit import AuditTrail
from core.events import CommandIssued, DeviceEnrolled
from core.metrics import new_registry
from core.probes import ProbeServer
from core.store import EventStore
from projections import http_api
from projections.authz import Caller
from projections.catalog import CATALOG
from projections.queries import ReadModels
from projections.runner import ProjectionRunner

KEY = secrets.token_hex(32)
PEOPLE = {
    "t-viewer": Caller("ann", "viewer"),
    "t-auditor": Caller("bob", "auditor"),
    "t-admin": Caller("carol", "admin"),
}


@pytest.fixture
async def api(store: EventStore, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await store.append(
        DeviceEnrolled(device_id=device, serial="ab", fingerprint_sha256="f", not_after=datetime.now(UTC))
    )
    await AuditTrail(store).record(actor="control", category="identity", action="device.enroll", target=device)
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
        routes=http_api.routes(ReadModels(tmp_path, KEY, store), authenticate=PEOPLE.get, audit=AuditTrail(store)),
    )
    await server.start()
    yield f"http://127.0.0.1:{server.port}", device
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
        ("/api/devices", "t-auditor", 403),
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


class Tables(HTMLParser):
    """The cell texts of every table's body rows in a page, by table id."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {}
        self._table = ""
        self._in_body = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.rows[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows[self._table].append([])
        elif tag == "td" and self._in_body:
            self.rows[self._table][-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_body and self.rows.get(self._table) and self.rows[self._table][-1]:
            self.rows[self._table][-1][-1] += data


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None and os.environ.get("CI") != "true", reason="needs Debian's chromium")
async def test_the_dashboard_shows_the_fleet_in_a_real_browser(api: tuple[str, str], tmp_path: Path) -> None:
    browser = chromium()
    assert browser is not None, "chromium is not installed (.ci/run installs it)"
    base, device = api
    # --dump-dom prints the page after its scripts ran; the virtual time budget lets the fetches finish.
    # The browser runs beside this event loop, which serves its requests meanwhile.
    process = await asyncio.create_subprocess_exec(
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        f"{base}/#token=t-admin",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    shown = subprocess.CompletedProcess(
        args=browser, returncode=process.returncode or 0, stdout=out.decode(), stderr=err.decode()
    )
    assert 'data-loaded="yes"' in shown.stdout, shown.stdout[:3000]
    tables = Tables(shown.stdout).rows
    assert [device, "enrolled"] in [row[:2] for row in tables["devices"]]
    # the fleet's recent commands, not one device's: this device's command is the newest
    assert tables["commands"][0][1:4] == [device, "reboot-now", "issued"], tables["commands"]
    lag = {row[0]: row for row in tables["lag"]}
    assert set(lag) == set(CATALOG), tables["lag"]
    assert "mesh.evt.device.> at " in lag["devices"][1] and lag["devices"][2:] == ["0", "0.0", "0"]
    assert "device.enroll" in [row[3] for row in tables["audit"]]  # the audit tail
