"""The dashboard as `up` serves it, in headless Chromium, with one real agent connected.

What issue 16 found a viewer shown here: the live agent as "enrolled" with no presence, raw
ISO timestamps, and a red "may not run audit.search" line. Here the viewer sees it online,
last seen a few seconds ago, and no panel it may not read; an operator sends it a command
as the device page's form does (the form itself is driven in tests/projections/test_dashboard.py),
the agent runs it, and its page shows its telemetry charted and the command in its history.
"""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.mahavishnu.cli_harness import MAHAVISHNU, Running, run
from tests.projections import png
from tests.projections.browser import CAN_BROWSE, Tables, dump_dom
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(not CAN_BROWSE, reason="needs Debian's chromium")

DEVICE = "dev-live"
RAW_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+")


def token_for(up: Running, operator: str, role: str) -> str:
    added = run("operator", "add", operator, "--role", role, env=up.env)
    assert added.returncode == 0, added.stderr
    made = run("operator", "token", operator, env=up.env)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture
def agent(up: Running, tmp_path: Path) -> Iterator[None]:
    """DEVICE enrolled and its agent running, reporting telemetry every second."""
    folder = tmp_path / DEVICE
    enrolled = run("device", "enroll", DEVICE, "--out", str(folder), env=up.env)
    assert enrolled.returncode == 0, enrolled.stderr
    config = folder / "agent.toml"
    text = config.read_text()
    config.write_text(text.replace("telemetry_interval = 60.0", "telemetry_interval = 1.0"))
    process = subprocess.Popen(
        [MAHAVISHNU, "agent", "run", "--config", str(config)],
        env=up.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


def get(up: Running, token: str, path: str) -> httpx.Response:
    trust = ssl.create_default_context(cafile=up.home / "ca" / "ca.pem")
    return httpx.get(
        f"https://127.0.0.1:{up.env['MAHAVISHNU_HTTP__PORT']}{path}",
        headers={"Authorization": f"Bearer {token}"},
        verify=trust,
        timeout=10,
    )


def api(up: Running, token: str, path: str) -> dict[str, Any]:
    answer = get(up, token, path)
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def state_of(up: Running, token: str, command_id: str) -> str | None:
    """The command's state; None while the read models have not seen it yet (a 404)."""
    answer = get(up, token, f"/api/commands/{command_id}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    state: str = answer.json()["state"]
    return state


def charted(up: Running, token: str) -> bool:
    """The agent is online and has reported at least three points of a metric."""
    device = api(up, token, f"/api/devices/{DEVICE}")
    history = api(up, token, f"/api/devices/{DEVICE}/telemetry")["metrics"]
    return device["presence"] == "online" and any(len(points) >= 3 for points in history.values())


def send(up: Running, token: str) -> str:
    """What the device page's form sends (tests/projections/test_dashboard.py drives the form itself)."""
    trust = ssl.create_default_context(cafile=up.home / "ca" / "ca.pem")
    answer = httpx.post(
        f"https://127.0.0.1:{up.env['MAHAVISHNU_HTTP__PORT']}/api/devices/{DEVICE}/commands",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "ping", "args": {}, "ttl_s": 30, "timeout_s": 10},
        verify=trust,
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    command_id: str = answer.json()["command_id"]
    return command_id


async def test_a_viewer_and_an_operator_use_the_dashboard_of_a_running_mesh(
    up: Running, agent: None, tmp_path: Path
) -> None:
    viewer, operator = token_for(up, "ann", "viewer"), token_for(up, "olga", "operator")
    wait_until(lambda: charted(up, viewer), timeout=60, what="the agent online with three points of telemetry")
    base = f"https://127.0.0.1:{up.env['MAHAVISHNU_HTTP__PORT']}"
    certificate = up.home / "server" / "cert.pem"

    shot = tmp_path / "viewer.png"
    fleet = await dump_dom(f"{base}/#token={viewer}", tmp_path / "profile-viewer", certificate, screenshot=shot)
    assert 'data-loaded="yes"' in fleet and 'data-role="viewer"' in fleet, fleet[:3000]
    assert 'id="audit-panel"' not in fleet and "may not run" not in fleet and not RAW_TIME.search(fleet)
    [row] = [row for row in Tables(fleet).rows["devices"] if row[0] == DEVICE]
    assert row[1] == "online" and re.fullmatch(r"\d+ s ago", row[2]) and row[3] == "enrolled", row
    assert re.search(r'data-count="online">[1-9]', fleet)
    image = png.read(shot)
    assert len(image.colours(0, 0, image.width, image.height)) > 50, "the screenshot is (nearly) blank"

    sent = send(up, operator)
    wait_until(
        lambda: state_of(up, operator, sent) == "succeeded",
        timeout=60,
        what="the agent to run the command the operator sent",
    )
    device_page = await dump_dom(
        f"{base}/#token={operator}&device={DEVICE}",
        tmp_path / "profile-operator",
        certificate,
        screenshot=tmp_path / "device.png",
    )
    assert 'data-view="device"' in device_page and 'id="send-panel"' in device_page, device_page[:3000]
    assert re.search(r'<figure class="chart" data-metric="[^"]+"', device_page), "no chart"
    history = Tables(device_page).rows["device-commands"]
    assert ["ping", "{}", "succeeded"] in [row[1:4] for row in history], history
    assert [sent_by for *_, sent_by in history] == ["olga"]
    assert not RAW_TIME.search(device_page)
