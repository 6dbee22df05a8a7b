"""`mahavishnu device list|tag` and `device enroll --tag`: the fleet a page at a time, filtered, tagged."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from mahavishnu.cli import device
from tests.mahavishnu.cli_harness import Running, one_line_error, run
from tests.projections.device_fleet import fleet, write_devices
from tests.waiting import wait_until


def listing(**options: Any) -> argparse.Namespace:
    fields: dict[str, Any] = {"limit": None, "presence": None, "site": None, "transport": None, "tag": None}
    return argparse.Namespace(**{**fields, **options})


async def test_the_list_follows_the_pages_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = write_devices(tmp_path, fleet(20))
    monkeypatch.setattr(device, "PAGE_MAX", 3)  # seven pages for twenty devices
    every = [d["device_id"] async for d in device.listed(models, listing())]
    assert every == [f"dev-{n:04d}" for n in range(20)]
    some = [d["device_id"] async for d in device.listed(models, listing(limit=5, site="north"))]
    assert some == ["dev-0000", "dev-0003", "dev-0006", "dev-0009", "dev-0012"]


async def test_a_bad_filter_is_named(tmp_path: Path) -> None:
    models = write_devices(tmp_path, fleet(2))
    with pytest.raises(device.MahavishnuError, match=r"bad filter: .* at `\$.site`"):
        [d async for d in device.listed(models, listing(site="North Site"))]


def test_a_device_is_one_line() -> None:
    seen = {
        "device_id": "dev-a", "status": "enrolled", "presence": "online", "last_seen": "2027-01-01T00:00:00+00:00",
        "transport": "agent", "site": "north", "tags": {"env": "prod", "rack": "r7"},
    }  # fmt: skip
    assert device.device_line(seen) == (
        "dev-a  enrolled  online  agent  site north  seen 2027-01-01T00:00:00+00:00  env=prod,rack=r7"
    )
    never = {**seen, "presence": "offline", "last_seen": None, "site": None, "tags": {}}
    assert device.device_line(never) == "dev-a  enrolled  offline  agent  no site  never seen"


def listed_json(up: Running, *options: str) -> list[dict[str, Any]]:
    answer = run("device", "list", "--json", *options, env=up.env)
    assert answer.returncode == 0, answer.stderr
    return [json.loads(line) for line in answer.stdout.splitlines()]


def test_devices_are_tagged_at_enrolment_and_after_and_listed_by_tag(up: Running, tmp_path: Path) -> None:
    refused = one_line_error(run("device", "enroll", "dev-x", "--tag", "rack", env=up.env))
    assert "tag 'rack' is not key=value" in refused
    assert "dev-x" not in run("device", "certificates", env=up.env).stdout  # refused before anything was issued

    for name, labels in (("dev-a", ["--tag", "rack=r7", "--tag", "env=prod", "--owner", "Ada"]), ("dev-b", [])):
        enrolled = run("device", "enroll", name, "--out", str(tmp_path / name), *labels, env=up.env)
        assert enrolled.returncode == 0, enrolled.stderr
    tagged = run("device", "tag", "dev-b", "rack=r7", "role=gw", env=up.env)
    assert (tagged.returncode, tagged.stdout.strip()) == (0, "tagged dev-b: rack=r7 role=gw"), tagged.stderr
    assert run("device", "tag", "dev-a", "--remove", "env", env=up.env).returncode == 0

    # `up` applies the events to the devices read model a moment later.
    def both_tagged() -> list[dict[str, Any]] | None:
        found = listed_json(up, "--tag", "rack=r7")
        return found if [d["tags"] for d in found] == [{"rack": "r7"}, {"rack": "r7", "role": "gw"}] else None

    found = wait_until(both_tagged, timeout=30, what="both devices tagged in the devices read model")
    assert [(d["device_id"], d["status"], d["presence"], d["transport"]) for d in found] == [
        ("dev-a", "enrolled", "offline", "agent"),  # no agent runs: never heard from
        ("dev-b", "enrolled", "offline", "agent"),
    ]
    assert [(d["owner"], d["location"]) for d in found] == [("Ada", None), (None, None)]  # the control host: admin
    assert [d["device_id"] for d in listed_json(up, "--tag", "role=gw")] == ["dev-b"]
    assert [d["device_id"] for d in listed_json(up, "--limit", "1")] == ["dev-a"]
    assert listed_json(up, "--presence", "online") == []
    assert listed_json(up, "--transport", "ssh") == []
    lines = run("device", "list", env=up.env).stdout.splitlines()
    assert lines == [
        "dev-a  enrolled  offline  agent  no site  never seen  rack=r7",
        "dev-b  enrolled  offline  agent  no site  never seen  rack=r7,role=gw",
    ]

    assert "tag key 'Rack'" in one_line_error(run("device", "tag", "dev-a", "Rack=r1", env=up.env))
    assert "no device 'dev-z' to tag" in one_line_error(run("device", "tag", "dev-z", "rack=r1", env=up.env))
    assert "nothing to change" in one_line_error(run("device", "tag", "dev-a", env=up.env))
    assert "--limit must be 1 or more" in one_line_error(run("device", "list", "--limit", "0", env=up.env))
    assert "at `$.site`" in one_line_error(run("device", "list", "--site", "North Site", env=up.env))
