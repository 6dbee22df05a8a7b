"""The dashboard in headless Chromium, per role: the fleet, a device's page, sending a command; screenshots checked.

Each page is loaded once with a measuring script after the page's own (browser.MEASURE),
which writes every panel's and chart's box into the DOM; the same Chromium run saves a
screenshot (kept in the test's tmp dir as evidence). What is shown is checked in the DOM;
the screenshot is checked for being drawn where the DOM says each panel is: not blank,
more than a background, and for a chart, its line's colour inside its box.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest
import sqlcipher3

from core.events import (
    AuditRecorded,
    CommandAccepted,
    CommandIssued,
    CommandSucceeded,
    DesiredStateSet,
    DeviceEnrolled,
    DeviceHeartbeat,
    DeviceRevoked,
    Event,
    ReportedState,
    TelemetryReported,
)
from core.store import EventStore
from mahavishnu.control.commands import sender
from projections import http_api, http_auth
from projections.authz import Caller, Refusal
from projections.queries import ReadModels
from tests.harness import Mesh
from tests.projections import png
from tests.projections.browser import CAN_BROWSE, MEASURE, Tables, boxes, dump_dom, project_all, serving

pytestmark = pytest.mark.skipif(not CAN_BROWSE, reason="needs Debian's chromium")

KEY = secrets.token_hex(32)
PEOPLE = {
    "t-viewer": Caller("ann", "viewer"),
    "t-operator": Caller("olga", "operator"),
    "t-auditor": Caller("bob", "auditor"),
}
AUTHENTICATE = http_auth.authenticator(
    by_token=PEOPLE.get, by_certificate=lambda pem: Refusal(401, "no certificates in this test")
)
WINDOW = (1280, 2400)  # wide and tall enough for every panel of a page
LINE = bytes((0x24, 0x56, 0xA6))  # the chart line's colour (dashboard/style.css .chart .line)
OWNER, LOCATION = "Ada Lovelace", "Lab 2, bench 4"  # the live device's personal fields
RAW_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+")  # an ISO timestamp with fractions of a second


@dataclass
class Fleet:
    base: str
    site: str  # this test's own site: the module's mesh holds other tests' devices too
    live: str  # online, with telemetry, a shadow and two commands
    quiet: str  # offline: heard from long ago
    unseen: str  # never heard from
    revoked: str
    command: str  # the live device's succeeded command
    store: EventStore
    certificate: Path
    scripts: dict[str, str]  # the pages /driven/<name> serve: the dashboard, this script after its own


def fleet_events(site: str, prefix: str) -> tuple[list[Event], dict[str, str]]:
    names = {role: f"{prefix}-{role}" for role in ("live", "quiet", "unseen", "revoked")}
    now = datetime.now(UTC)
    live, command = names["live"], f"c-{prefix}"
    events: list[Event] = [
        DeviceEnrolled(
            device_id=name, serial="ab", fingerprint_sha256="f", not_after=now + timedelta(days=1), site=site
        )
        for name in names.values()
    ]
    events += [
        DeviceRevoked(device_id=names["revoked"], serials=["ab"]),
        DeviceHeartbeat(device_id=names["quiet"], uptime_s=1.0, occurred_at=now - timedelta(days=2)),
        *(
            TelemetryReported(
                device_id=live,
                metrics={"temp_c": 40.0 + (n % 7) * 0.8, "rpm": 1200.0 + 15 * n},
                occurred_at=now - timedelta(minutes=30 - n),
            )
            for n in range(30)
        ),
        DesiredStateSet(device_id=live, state={"fan": "auto", "limit_c": 70}, version=3),
        ReportedState(device_id=live, state={"fan": "on", "limit_c": 70}),
        CommandIssued(command_id=command, device_id=live, name="reboot-now", args={"delay_s": 5}, actor="control"),
        CommandAccepted(command_id=command, device_id=live),
        CommandSucceeded(command_id=command, device_id=live, result={"ok": True}),
        DeviceHeartbeat(device_id=live, uptime_s=99.0, occurred_at=now),
    ]
    return events, names | {"command": command}


@pytest.fixture
async def fleet(store: EventStore, mesh: Mesh, tmp_path: Path) -> AsyncIterator[Fleet]:
    tag = uuid.uuid4().hex[:6]
    events, names = fleet_events(f"site-{tag}", f"dash-{tag}")
    report = await store.append_many(events)
    assert report.acknowledged == len(events), report
    models = tmp_path / "models"
    await project_all(store, models, KEY)
    # The live device's personal fields, as the devices model stores them once it opened them
    # (sealing itself is tested in tests/projections/test_devices_model.py).
    written = sqlcipher3.connect(str(models / "devices.db"), isolation_level=None)
    written.execute(f"PRAGMA key = \"x'{KEY}'\"")
    written.execute("UPDATE devices SET owner = ?, location = ? WHERE device_id = ?", (OWNER, LOCATION, names["live"]))
    written.close()
    routes = http_api.routes(
        ReadModels(models, KEY, store), authenticate=AUTHENTICATE, audit=store.audit, send_command=sender(store)
    )
    async with serving(mesh.home, routes) as (base, scripts):
        yield Fleet(
            base,
            f"site-{tag}",
            store=store,
            certificate=mesh.home.server_dir / "cert.pem",
            scripts=scripts,
            **names,
        )


@dataclass
class Shown:
    dom: str
    tables: dict[str, list[list[str]]]
    boxes: dict[str, tuple[int, int, int, int]]
    image: png.Image = field(repr=False)

    def panels(self) -> set[str]:
        """The panels of the view shown (the other view's are in the DOM, hidden)."""
        views = re.findall(r'<main id="[a-z-]+"( hidden="")?>(.*?)</main>', self.dom, re.S)
        return {panel for hidden, body in views if not hidden for panel in re.findall(r'<section id="([a-z-]+)"', body)}

    def text_of(self, element_id: str) -> str:
        found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', self.dom, re.S)
        assert found, f"no #{element_id}"
        return unescape(found[1])


async def show(fleet: Fleet, tmp_path: Path, name: str, fragment: str, script: str = MEASURE) -> Shown:
    """The dashboard at `#fragment` with `script` after its own: its DOM and its screenshot (tmp_path/<name>.png)."""
    shot = tmp_path / f"{name}.png"
    fleet.scripts[name] = script
    dom = await dump_dom(
        f"{fleet.base}/driven/{name}#{fragment}",
        tmp_path / f"profile-{name}",
        fleet.certificate,
        screenshot=shot,
        window=WINDOW,
    )
    assert 'data-measured="yes"' in dom, dom[:3000]
    return Shown(dom, Tables(dom).rows, boxes(dom), png.read(shot))


def assert_drawn(shown: Shown, panels: set[str]) -> None:
    """The screenshot is not blank, and each panel is laid out inside it with more than a background drawn."""
    image = shown.image
    assert len(image.colours(0, 0, image.width, image.height)) > 50, "the screenshot is (nearly) blank"
    for panel, box in shown.boxes.items():  # the other view's panels, and those left out, take no room
        if panel.endswith("-panel") and panel not in panels:
            assert box[2:] == (0, 0), f"#{panel} is laid out as {box}, though not shown"
    for panel in panels:
        x, y, width, height = shown.boxes[panel]
        assert width >= 300 and height >= 40, f"#{panel} is laid out as {shown.boxes[panel]}"
        assert x >= 0 and y >= 0 and y + height <= image.height, f"#{panel} {shown.boxes[panel]} is off the screenshot"
        assert len(image.colours(x, y, width, height)) > 10, f"#{panel} is blank in the screenshot"


def assert_readable(shown: Shown) -> None:
    """No raw error line, no stored ISO timestamps: what people were shown before."""
    assert 'id="problem" hidden=""' in shown.dom, shown.text_of("problem")
    assert "may not run" not in shown.dom and "panel-problem" not in shown.dom
    assert not RAW_TIME.search(shown.dom), RAW_TIME.search(shown.dom)


async def test_a_viewer_sees_the_fleet_summary_presence_and_devices_without_the_panels_it_may_not_read(
    fleet: Fleet, tmp_path: Path
) -> None:
    shown = await show(fleet, tmp_path, "viewer-fleet", "token=t-viewer")
    assert 'data-role="viewer"' in shown.dom and shown.text_of("who") == "ann · viewer"
    assert shown.panels() == {
        "summary-panel",
        "devices-panel",
        "commands-panel",
        "campaigns-panel",
        "updates-panel",
        "lag-panel",
    }  # no audit, no device page
    assert_readable(shown)

    by_site = {row[0]: row[1:] for row in shown.tables["by-site"]}
    assert by_site[fleet.site] == ["4", "1", "1", "1", "1"]  # devices, online, offline, never seen, revoked
    assert {row[0] for row in shown.tables["by-transport"]} >= {"agent"}
    total = dict(re.findall(r'data-count="(\w+)">(\d+)<', shown.dom))
    assert set(total) == {"devices", "online", "offline", "never_seen", "revoked"} and int(total["online"]) >= 1

    rows = {row[0]: row for row in shown.tables["devices"]}
    live, quiet, unseen = rows[fleet.live], rows[fleet.quiet], rows[fleet.unseen]
    assert live[1] == "online" and re.fullmatch(r"\d+ s ago", live[2]), live
    assert quiet[1:3] == ["offline", "2 d ago"] and unseen[1:3] == ["never seen", "never"]
    assert rows[fleet.revoked][3] == "revoked" and live[5] == fleet.site
    assert f'href="#device={fleet.live}"' in shown.dom
    assert OWNER not in shown.dom and LOCATION not in shown.dom  # a viewer's list has no personal field
    issued = next(row for row in shown.tables["commands"] if row[1] == fleet.live)
    assert issued[2:4] == ["reboot-now", "succeeded"] and re.search(r"\d{4}, \d+:\d\d:\d\d [AP]M", issued[0]), issued

    assert_drawn(shown, shown.panels())


async def test_search_and_filters_page_through_the_devices(fleet: Fleet, tmp_path: Path) -> None:
    prefix = fleet.live.rsplit("-", 1)[0]
    search = f"""
<script>
(async () => {{
  while (document.body.dataset.loaded !== "yes") await new Promise(done => setTimeout(done, 50));
  document.querySelector("[name=prefix]").value = "{prefix}";
  document.querySelector("[name=presence]").value = "offline";
  await filterDevices(new Event("submit"));
  document.body.dataset.searched = "yes";
}})().catch(e => {{ document.body.dataset.error = String(e); }});
</script>
{MEASURE}"""
    page = await show(fleet, tmp_path, "viewer-search", "token=t-viewer", script=search)
    assert 'data-searched="yes"' in page.dom, re.findall(r"<body[^>]*>", page.dom)
    assert [row[0] for row in page.tables["devices"]] == sorted([fleet.quiet, fleet.revoked, fleet.unseen])


async def test_an_operator_sees_a_devices_chart_shadow_history_and_command_form(fleet: Fleet, tmp_path: Path) -> None:
    shown = await show(fleet, tmp_path, "operator-device", f"token=t-operator&device={fleet.live}")
    assert 'data-view="device"' in shown.dom and shown.text_of("device-name") == fleet.live
    assert shown.panels() == {"device-panel", "chart-panel", "shadow-panel", "send-panel", "history-panel"}
    assert_readable(shown)
    assert shown.text_of("device-presence") == "online"
    assert re.search(r'data-fact="last_seen">\d+ s ago \([^<]*\d{4}[^<]*\)<', shown.dom), "last seen"
    assert f'data-fact="owner">{OWNER}<' in shown.dom and f'data-fact="location">{LOCATION}<' in shown.dom

    charts = re.findall(r'<figure class="chart" data-metric="(\w+)"', shown.dom)
    assert charts == ["rpm", "temp_c"]
    assert shown.dom.count('data-points="30"') == 2 and shown.dom.count('class="line"') == 2
    assert "temp_c: 40.8" in shown.dom  # the last value (n = 29: 40 + (29 % 7) * 0.8)

    assert shown.tables["shadow-desired"] == [["fan", '"auto"'], ["limit_c", "70"]]
    assert shown.tables["shadow-reported"] == [["fan", '"on"'], ["limit_c", "70"]]
    assert shown.tables["shadow-delta"] == [["fan", '"auto"']]
    assert "desired version 3" in shown.text_of("shadow-version")
    [history] = shown.tables["device-commands"]
    assert history[1:5] == ["reboot-now", '{"delay_s":5}', "succeeded", ""] and history[5] == "control"

    assert_drawn(shown, shown.panels())
    for metric in charts:  # the line is drawn inside each chart's box
        assert LINE in shown.image.colours(*shown.boxes[metric]), f"no line drawn in the {metric} chart"


async def test_an_operator_sends_a_command_from_the_device_page(fleet: Fleet, tmp_path: Path) -> None:
    send = f"""
<script>
(async () => {{
  while (document.body.dataset.loaded !== "yes") await new Promise(done => setTimeout(done, 50));
  const form = document.getElementById("send-command");
  form.elements.name.value = "ping";
  form.elements.args.value = '{{"count": 2}}';
  form.requestSubmit();
  while (!document.getElementById("send-outcome").dataset.commandId) await new Promise(done => setTimeout(done, 50));
  document.body.dataset.sent = "yes";
}})();
</script>
{MEASURE}"""
    shown = await show(fleet, tmp_path, "operator-send", f"token=t-operator&device={fleet.live}", script=send)
    assert 'data-sent="yes"' in shown.dom, shown.dom[:3000]
    command_id = re.search(r'data-command-id="(c-[0-9a-f]+)"', shown.dom)
    assert command_id and shown.text_of("send-outcome") == f"Sent ping: command {command_id[1]}."
    [stored] = [s.event async for s in fleet.store.read(f"mesh.cmd.{fleet.live}.{command_id[1]}")]
    assert isinstance(stored, CommandIssued) and (stored.name, stored.args, stored.actor) == (
        "ping",
        {"count": 2},
        "olga",
    )
    audit = [s.event async for s in fleet.store.read("mesh.audit.command.olga")]
    assert any(isinstance(e, AuditRecorded) and e.details.get("command_id") == command_id[1] for e in audit)


async def test_a_viewers_device_page_has_no_command_form_nor_personal_fields_and_an_auditor_sees_them_sealed(
    fleet: Fleet, tmp_path: Path
) -> None:
    viewer = await show(fleet, tmp_path, "viewer-device", f"token=t-viewer&device={fleet.live}")
    assert viewer.panels() == {"device-panel", "chart-panel", "shadow-panel", "history-panel"}
    assert OWNER not in viewer.dom and LOCATION not in viewer.dom and 'data-fact="owner"' not in viewer.dom
    assert_readable(viewer)
    assert_drawn(viewer, viewer.panels())

    # An auditor reads the trail, the campaigns and the devices (which hold personal data, not what it is).
    auditor = await show(fleet, tmp_path, "auditor-fleet", "token=t-auditor")
    assert auditor.panels() == {"devices-panel", "campaigns-panel", "updates-panel", "audit-panel"}
    assert_readable(auditor)
    assert auditor.tables["audit"], "the audit tail is empty"
    assert_drawn(auditor, auditor.panels())
    page = await show(fleet, tmp_path, "auditor-device", f"token=t-auditor&device={fleet.live}")
    assert page.panels() == {"device-panel", "shadow-panel"}
    assert 'data-fact="owner">sealed<' in page.dom and 'data-fact="location">sealed<' in page.dom
    assert OWNER not in page.dom and LOCATION not in page.dom
    assert_readable(page)


async def test_without_a_credential_the_page_says_how_to_sign_in_and_shows_no_panel(
    fleet: Fleet, tmp_path: Path
) -> None:
    shown = await show(fleet, tmp_path, "anonymous", "")
    assert shown.panels() == set()
    assert shown.text_of("problem").startswith("Sign in: authenticate with an operator's client certificate")
    assert '<p id="problem">' in shown.dom  # shown: no longer hidden
