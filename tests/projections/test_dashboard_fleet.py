"""The dashboard with a fleet of 10,000 devices, in a real browser: it draws the first page and offers more.

The devices reach the read model as in a running mesh: events appended through the
store's bulk path, applied by the projection runner. A second load of the page runs a
small driver script after the page's own, which uses its "more" and filter controls. The time from the browser asking
for the page to the first page of devices being answered is printed (a benchmark
matter, not a condition of this test); with `-s` it shows.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.events import DeviceEnrolled, DeviceHeartbeat, DeviceTagged, Event
from core.metrics import new_registry
from core.probes import ProbeServer, ServerTLS
from core.store import EventStore
from projections import http_api, http_auth
from projections.authz import Caller, Refusal
from projections.catalog import CATALOG
from projections.queries import ReadModels
from projections.runner import ProjectionRunner
from tests.harness import Mesh
from tests.projections.browser import CAN_BROWSE, Tables, driven, dump_dom

KEY = secrets.token_hex(32)
FLEET = 10_000
AUTHENTICATE = http_auth.authenticator(
    by_token={"t-viewer": Caller("vera", "viewer")}.get,
    by_certificate=lambda pem: Refusal(401, "no certificates in this test"),
)


def fleet_events(count: int) -> list[Event]:
    """`count` devices, each enrolled and tagged; every tenth at site north, the even ones heard from now."""
    now, later = datetime.now(UTC), datetime.now(UTC) + timedelta(days=365)
    events: list[Event] = []
    for n in range(count):
        device = f"dev-{n:05d}"
        events.append(
            DeviceEnrolled(
                device_id=device,
                serial=f"{n:x}",
                fingerprint_sha256="ab" * 32,
                not_after=later,
                site="north" if n % 10 == 0 else "",
            )
        )
        events.append(DeviceTagged(device_id=device, tags={"rack": f"r{n % 40}", "env": "prod"}))
        if n % 2 == 0:
            events.append(DeviceHeartbeat(device_id=device, uptime_s=60.0, occurred_at=now))
    return events


def timed(routes: list[BaseRoute], marks: dict[str, float]) -> list[BaseRoute]:
    """The routes, noting when the page was first asked for and when the first /api/devices answer was ready."""

    def wrapped(route: Route) -> Route:
        endpoint: Callable[[Request], Any] = route.endpoint

        async def noted(request: Request) -> Response:
            if route.path == "/":
                marks.setdefault("page_asked", time.perf_counter())
            response: Response = await endpoint(request)
            if route.path == "/api/devices":
                marks.setdefault("devices_answered", time.perf_counter())
            return response

        return Route(route.path, noted, methods=["GET"])

    return [wrapped(route) if isinstance(route, Route) else route for route in routes]


# What a person does once the first page is there, as the page's own functions do it (--dump-dom
# cannot click): ask for more devices, then show only the offline ones tagged rack=r3.
DRIVER = """
<script>
async function drive() {
  while (document.body.dataset.loaded !== "yes") await new Promise(done => setTimeout(done, 50));
  await moreDevices();
  document.body.dataset.rowsAfterMore = document.querySelectorAll("#devices tbody tr").length;
  document.querySelector("[name=presence]").value = "offline";
  document.querySelector("[name=tag]").value = "rack=r3";
  await filterDevices(new Event("submit"));
  document.body.dataset.driven = "yes";
}
drive();
</script>
"""


@pytest.fixture(scope="module")
def server_tls(mesh: Mesh) -> ServerTLS:
    server = mesh.home.server_dir
    return ServerTLS(server / "cert.pem", server / "key.pem", client_ca=mesh.home.ca_dir / "ca.pem")


@pytest.fixture
async def dashboard(
    store: EventStore, server_tls: ServerTLS, tmp_path: Path
) -> AsyncIterator[tuple[str, dict[str, float]]]:
    events = fleet_events(FLEET)
    report = await store.append_many(events)
    assert report.acknowledged == len(events), report
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    marks: dict[str, float] = {}
    routes = http_api.routes(ReadModels(tmp_path, KEY, store), authenticate=AUTHENTICATE, audit=store.audit)
    routes = [*timed(routes, marks), Route("/driven", driven(DRIVER), methods=["GET"])]
    server = ProbeServer("127.0.0.1", 0, new_registry(), ready=lambda: True, routes=routes, tls=server_tls)
    await server.start()
    yield f"{server.scheme}://127.0.0.1:{server.port}", marks
    await server.stop()


@pytest.mark.skipif(not CAN_BROWSE, reason="needs Debian's chromium")
async def test_the_dashboard_draws_the_first_page_of_a_fleet_of_10000_and_offers_more(
    dashboard: tuple[str, dict[str, float]], mesh: Mesh, tmp_path: Path
) -> None:
    base, marks = dashboard
    started = time.perf_counter()
    shown = await dump_dom(f"{base}/#token=t-viewer", tmp_path / "profile", mesh.home.server_dir / "cert.pem")
    browser_s = time.perf_counter() - started
    assert 'data-loaded="yes"' in shown, shown[:3000]
    # The summary counts the whole fleet: the even devices heard from now, the odd ones never.
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', shown))
    assert counts == {"devices": "10000", "online": "5000", "offline": "0", "never_seen": "5000", "revoked": "0"}
    assert Tables(shown).rows["by-site"] == [
        ["(hub)", "9000", "4000", "0", "5000", "0"],
        ["north", "1000", "1000", "0", "0", "0"],
    ]
    tables = Tables(shown).rows
    devices = tables["devices"]
    assert len(devices) == 100, f"{len(devices)} rows: the first page only"
    assert [row[0] for row in devices] == [f"dev-{n:05d}" for n in range(100)]
    assert devices[0][:2] == ["dev-00000", "online"] and devices[0][3:] == [
        "enrolled",
        "agent",
        "north",
        "env=prod, rack=r0",
    ]
    assert devices[1][:6] == ["dev-00001", "never seen", "never", "enrolled", "agent", ""]
    assert devices[0][2].endswith(" s ago"), devices[0]
    assert '<button id="more-devices" data-after="dev-00099">' in shown  # shown (not hidden), with its cursor

    used = await dump_dom(f"{base}/driven#token=t-viewer", tmp_path / "profile", mesh.home.server_dir / "cert.pem")
    assert 'data-driven="yes"' in used and 'data-rows-after-more="200"' in used, used[:3000]
    filtered = Tables(used).rows["devices"]
    assert [row[0] for row in filtered] == [f"dev-{n:05d}" for n in range(3, 4000, 40)]  # its first page
    assert {(row[1], row[6]) for row in filtered} == {("never seen", "env=prod, rack=r3")}
    assert '<button id="more-devices" data-after="dev-03963">' in used

    first_page_s = marks["devices_answered"] - marks["page_asked"]
    arrived = re.search(r'data-first-devices-ms="(\d+)"', shown)
    print(
        f"\ndashboard, {FLEET} devices: first page answered {first_page_s * 1000:.0f} ms after the page was asked for;"
        f" arrived at {arrived[1] if arrived else '?'} ms of the page's clock; browser run in all {browser_s:.1f} s"
    )
