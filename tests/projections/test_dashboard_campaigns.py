"""The dashboard's campaigns panel in headless Chromium: each campaign's status, a bar per state, the rule that fired.

As tests/projections/test_dashboard.py does, the page is loaded once with a measuring
script after its own, which writes the panel's and every bar part's box into the DOM; the
same run's screenshot is checked for each part's colour where the DOM says it is.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.campaigns.ids import new_campaign_id
from core.campaigns.states import ExecutionState
from core.store import EventStore
from projections import http_api, http_auth
from projections.authz import Caller, Refusal
from projections.queries import ReadModels
from tests.harness import Mesh
from tests.projections import png
from tests.projections.browser import CAN_BROWSE, Tables, dump_dom, measuring, project_all, serving
from tests.projections.campaign_life import aborted, executions, paused, started

pytestmark = pytest.mark.skipif(not CAN_BROWSE, reason="needs Debian's chromium")

KEY = secrets.token_hex(32)
PEOPLE = {"t-viewer": Caller("ann", "viewer"), "t-auditor": Caller("bob", "auditor")}
AUTHENTICATE = http_auth.authenticator(by_token=PEOPLE.get, by_certificate=lambda pem: Refusal(401, "no certificates"))
# The parts' colours (dashboard/style.css .part.<state>).
COLOURS = {
    "succeeded": bytes((0x2E, 0x9A, 0x3E)),
    "failed": bytes((0xC6, 0x28, 0x28)),
    "in_progress": bytes((0x3D, 0x7B, 0xD9)),
    "pending": bytes((0xDD, 0xE1, 0xE6)),
}
# Once the page has loaded: the panel's box, and each bar part's, as data-box.
MEASURE_BARS = measuring("#campaigns-panel, #campaigns .bar .part")


@dataclass
class Site:
    base: str
    certificate: Path
    scripts: dict[str, str]
    running: str
    stopped: str


@pytest.fixture
async def site(store: EventStore, mesh: Mesh, tmp_path: Path) -> AsyncIterator[Site]:
    running, stopped = new_campaign_id(), new_campaign_id()
    fleet = [f"dev-{n:03d}" for n in range(40)]
    await store.append_many(
        [
            *started(running, fleet, name="rotate keys", waves=1),
            *executions(running, fleet[:20], 0, ExecutionState.SUCCEEDED),
            *executions(running, fleet[20:30], 0, ExecutionState.IN_PROGRESS),
            *started(stopped, fleet, name="firmware 2.1"),
            *executions(stopped, fleet[:10], 0, ExecutionState.SUCCEEDED),
            *executions(stopped, fleet[10:20], 0, ExecutionState.FAILED),
            paused(stopped),
            aborted(stopped),
        ]
    )
    models = tmp_path / "models"
    await project_all(store, models, KEY)
    routes = http_api.routes(ReadModels(models, KEY, store), authenticate=AUTHENTICATE, audit=store.audit)
    async with serving(mesh.home, routes) as (base, scripts):
        yield Site(base, mesh.home.server_dir / "cert.pem", scripts, running, stopped)


def box_of(tag: str) -> tuple[int, int, int, int]:
    found = re.search(r'data-box="([^"]+)"', tag)
    assert found, tag
    x, y, width, height = (int(n) for n in found[1].split(","))
    return x, y, width, height


async def test_a_viewer_sees_each_campaigns_progress_status_and_the_rule_that_fired(site: Site, tmp_path: Path) -> None:
    site.scripts["campaigns"] = MEASURE_BARS
    shot = tmp_path / "campaigns.png"
    dom = await dump_dom(
        f"{site.base}/driven/campaigns#token=t-viewer", tmp_path / "profile", site.certificate, screenshot=shot
    )
    assert 'data-measured="yes"' in dom, dom[:3000]
    assert "panel-problem" not in dom

    rows = Tables(dom).rows["campaigns"]
    assert [row[:5] for row in rows] == [  # newest first
        ["firmware 2.1", "aborted", "", "20 of 40", "abort[0]: failed 15.2% >= 10% of 105 executed"],
        ["rotate keys", "running", "", "20 of 40", ""],
    ]
    assert all(re.search(r"\d{4}, \d+:\d\d:\d\d [AP]M", row[5]) and row[6] == "ann" for row in rows), rows
    parts = re.findall(r'<span class="part (\w+)"[^>]*data-state="\w+" data-count="(\d+)"[^>]*>', dom)
    assert parts == [
        ("succeeded", "10"), ("failed", "10"), ("pending", "20"),
        ("succeeded", "20"), ("in_progress", "10"), ("pending", "10"),
    ]  # fmt: skip

    image = png.read(shot)
    x, y, width, height = box_of(re.search(r'<section id="campaigns-panel"[^>]*>', dom)[0])  # type: ignore[index]
    assert width >= 300 and y + height <= image.height, (x, y, width, height)
    tags = re.findall(r'<span class="part \w+"[^>]*data-box="[^"]+"[^>]*>', dom)
    widths = []
    for tag in tags:
        state = re.search(r'class="part (\w+)"', tag)[1]  # type: ignore[index]
        part = box_of(tag)
        widths.append(part[2])
        if state in COLOURS:  # each part is drawn in its state's colour, where the DOM says it is
            assert COLOURS[state] in image.colours(*part), f"no {state} drawn at {part}"
    # Each part as wide as its share: firmware's three quarters, rotate keys' halves and quarters.
    assert abs(widths[0] - widths[1]) <= 1 and abs(widths[2] - 2 * widths[0]) <= 1, widths
    assert abs(widths[3] - 2 * widths[4]) <= 1 and abs(widths[4] - widths[5]) <= 1, widths


async def test_an_auditor_reads_the_campaigns_too(site: Site, tmp_path: Path) -> None:
    site.scripts["auditor"] = MEASURE_BARS
    dom = await dump_dom(f"{site.base}/driven/auditor#token=t-auditor", tmp_path / "profile", site.certificate)
    assert 'data-measured="yes"' in dom, dom[:3000]
    assert [row[:2] for row in Tables(dom).rows["campaigns"]][:2] == [
        ["firmware 2.1", "aborted"],
        ["rotate keys", "running"],
    ]
