"""The dashboard's update compliance panel in headless Chromium: per artifact its latest version and a bar of the fleet.

As tests/projections/test_dashboard_campaigns.py does, the page is loaded with a measuring
script after its own, which writes every bar part's box into the DOM; the same run's
screenshot is checked for each part's colour where the DOM says it is.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.events import ArtifactAdded, CommandFailed, CommandIssued, CommandRunning, ReportedState
from core.store import EventStore
from core.updates.states import INSTALL_COMMAND
from projections import http_api, http_auth
from projections.authz import Caller, Refusal
from projections.queries import ReadModels
from tests.harness import Mesh
from tests.projections import png
from tests.projections.browser import CAN_BROWSE, Tables, dump_dom, measuring, project_all, serving

pytestmark = pytest.mark.skipif(not CAN_BROWSE, reason="needs Debian's chromium")

KEY = secrets.token_hex(32)
PEOPLE = {"t-viewer": Caller("ann", "viewer")}
AUTHENTICATE = http_auth.authenticator(by_token=PEOPLE.get, by_certificate=lambda pem: Refusal(401, "no certificates"))
# The parts' colours (dashboard/style.css .part.update-<status>).
COLOURS = {
    "update-latest": bytes((0x2E, 0x9A, 0x3E)),
    "update-pending": bytes((0x3D, 0x7B, 0xD9)),
    "update-failed": bytes((0xC6, 0x28, 0x28)),
    "update-outdated": bytes((0xD9, 0xB4, 0x3D)),
}
MEASURE_BARS = measuring("#updates .bar .part")


@dataclass
class Site:
    base: str
    certificate: Path
    scripts: dict[str, str]


def installed(device: str, version: str) -> ReportedState:
    return ReportedState(device_id=device, state={"software": {"pump-fw": version}}, actor=device)


def sent(device: str, command_id: str) -> CommandIssued:
    args = {"name": "pump-fw", "version": "2.0.0"}
    return CommandIssued(command_id=command_id, device_id=device, name=INSTALL_COMMAND, args=args, actor="ann")


@pytest.fixture
async def site(store: EventStore, mesh: Mesh, tmp_path: Path) -> AsyncIterator[Site]:
    await store.append_many(
        [
            ArtifactAdded(name="pump-fw", version="1.0.0", device_type="pump", length=1, sha256="0" * 64),
            ArtifactAdded(name="pump-fw", version="2.0.0", device_type="pump", length=1, sha256="1" * 64),
            *(installed(f"p-{n}", "2.0.0") for n in range(4)),  # on the latest
            *(installed(f"p-{n}", "1.0.0") for n in range(4, 8)),
            sent("p-4", "u-4"),  # pending: issued, and running
            sent("p-5", "u-5"),
            CommandRunning(command_id="u-5", device_id="p-5", actor="p-5"),
            sent("p-6", "u-6"),  # failed
            CommandFailed(command_id="u-6", device_id="p-6", error="update refused (hash): ...", actor="p-6"),
        ]  # p-7: outdated
    )
    models = tmp_path / "models"
    await project_all(store, models, KEY)
    routes = http_api.routes(ReadModels(models, KEY, store), authenticate=AUTHENTICATE, audit=store.audit)
    async with serving(mesh.home, routes) as (base, scripts):
        yield Site(base, mesh.home.server_dir / "cert.pem", scripts)


async def test_a_viewer_sees_how_many_devices_run_the_latest_have_it_pending_failed_or_run_older(
    site: Site, tmp_path: Path
) -> None:
    site.scripts["updates"] = MEASURE_BARS
    shot = tmp_path / "updates.png"
    dom = await dump_dom(
        f"{site.base}/driven/updates#token=t-viewer", tmp_path / "profile", site.certificate, screenshot=shot
    )
    assert 'data-measured="yes"' in dom, dom[:3000]
    assert "panel-problem" not in dom
    assert Tables(dom).rows["updates"] == [["pump-fw", "2.0.0", "", "4 of 8", "2", "1"]]
    parts = re.findall(r'<span class="part ([\w-]+)"[^>]*data-count="(\d+)"[^>]*data-box="([^"]+)"', dom)
    assert [(css, count) for css, count, _ in parts] == [
        ("update-latest", "4"),
        ("update-pending", "2"),
        ("update-failed", "1"),
        ("update-outdated", "1"),
    ]
    image = png.read(shot)
    for css, _, box in parts:
        x, y, width, height = (int(n) for n in box.split(","))
        assert COLOURS[css] in image.colours(x, y, width, height), f"no {css} drawn at {box}"
    widths = [int(box.split(",")[2]) for _, _, box in parts]
    assert abs(widths[0] - 2 * widths[1]) <= 1 and abs(widths[1] - 2 * widths[2]) <= 1, widths


async def test_a_devices_page_says_what_it_runs_and_its_update_under_way(site: Site, tmp_path: Path) -> None:
    site.scripts["device"] = MEASURE_BARS
    dom = await dump_dom(f"{site.base}/driven/device#token=t-viewer&device=p-5", tmp_path / "profile", site.certificate)
    assert 'data-measured="yes"' in dom, dom[:3000]
    assert 'data-fact="software">pump-fw 1.0.0 (latest 2.0.0, update to 2.0.0 running)<' in dom, dom[:5000]
