"""devices.list over a real encrypted devices read model: pages by cursor, filters, tags, bad requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from core.events import DeviceRevoked, DeviceTagged, SshHostRegistered
from projections.device_queries import (
    PAGE_DEFAULT,
    PAGE_MAX,
    PRESENCE_WINDOW_S,
    DeviceList,
    devices_list,
    next_cursor,
    presence_cutoff,
)
from projections.queries import DeviceGet, devices_get, parse
from projections.reading import QueryError, ReadModels
from tests.projections.device_fleet import KEY, enrolled, fleet, write_devices


async def page(models: ReadModels, **fields: Any) -> dict[str, Any]:
    answer = await devices_list(models, DeviceList(**fields))
    document: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(answer))
    return document


async def every_page(models: ReadModels, **fields: Any) -> list[dict[str, Any]]:
    """Every device the list reaches by following `next`, in the order it answers them."""
    seen: list[dict[str, Any]] = []
    after = None
    for _ in range(1000):
        answer = await page(models, after=after, **fields)
        assert len(answer["devices"]) <= fields.get("limit", PAGE_DEFAULT)
        seen += answer["devices"]
        after = answer["next"]
        if after is None:
            return seen
    raise AssertionError("the pages never ended")


async def test_following_next_reaches_every_device_exactly_once_in_id_order(tmp_path: Path) -> None:
    models = write_devices(tmp_path, fleet(250))
    expected = [f"dev-{n:04d}" for n in range(250)]
    for limit in (1, 7, 50, PAGE_DEFAULT, 250, PAGE_MAX):
        assert [d["device_id"] for d in await every_page(models, limit=limit)] == expected, limit


async def test_the_last_full_page_says_there_is_no_next(tmp_path: Path) -> None:
    models = write_devices(tmp_path, fleet(21))
    second = await page(models, limit=7, after="dev-0006")
    assert (len(second["devices"]), second["next"]) == (7, "dev-0013")
    last = await page(models, limit=7, after=second["next"])
    assert ([d["device_id"] for d in last["devices"]][-1], last["next"]) == (
        "dev-0020",
        None,
    )  # not one empty page more
    assert await page(models, after="dev-9999") == {"devices": [], "next": None}


async def test_a_device_reads_with_its_presence_site_transport_and_tags(tmp_path: Path) -> None:
    models = write_devices(tmp_path, fleet(3))
    [first, second, _] = (await page(models))["devices"]
    assert set(first) == {
        "device_id", "status", "presence", "last_seen", "uptime_s", "outbox", "transport", "site", "tags"
    }  # fmt: skip
    assert (first["presence"], first["site"], first["transport"]) == ("online", "north", "mqtt")
    assert first["tags"] == {"env": "prod", "rack": "r7"}
    assert (second["presence"], second["site"], second["transport"], second["status"]) == (
        "offline", None, "agent", "enrolled"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        ({"presence": "online"}, lambda n: n % 2 == 0),
        ({"presence": "offline"}, lambda n: n % 2 == 1),  # heard from long ago, or never
        ({"site": "north"}, lambda n: n % 3 == 0),
        ({"transport": "mqtt"}, lambda n: n % 5 == 0),
        ({"transport": "agent"}, lambda n: n % 5 != 0),
        ({"tag": "rack=r7"}, lambda n: n % 7 == 0),
        ({"tag": "env=prod"}, lambda n: True),
        ({"tag": "env=test"}, lambda n: False),
        ({"tag": "rack=r7", "site": "north", "presence": "online"}, lambda n: n % 42 == 0),
        ({"site": "north", "transport": "mqtt"}, lambda n: n % 15 == 0),
    ],
)
async def test_each_filter_pages_through_exactly_its_devices(
    tmp_path: Path, fields: dict[str, Any], matches: Any
) -> None:
    models = write_devices(tmp_path, fleet(120))
    found = await every_page(models, limit=4, **fields)
    assert [d["device_id"] for d in found] == [f"dev-{n:04d}" for n in range(120) if matches(n)]


async def test_ssh_hosts_and_revoked_devices_are_listed_as_the_model_names_them(tmp_path: Path) -> None:
    host = SshHostRegistered(
        device_id="host-a", host="10.0.0.7", user="ops", host_key="ssh-ed25519 AAAA", fingerprint_sha256="SHA256:x"
    )
    models = write_devices(tmp_path, [enrolled("dev-a"), DeviceRevoked(device_id="dev-a", serials=["1f"]), host])
    assert [(d["device_id"], d["transport"]) for d in (await page(models, transport="ssh"))["devices"]] == [
        ("host-a", "ssh")
    ]
    assert [(d["device_id"], d["status"]) for d in (await page(models, transport="agent"))["devices"]] == [
        ("dev-a", "revoked")
    ]


async def test_tag_events_set_replace_and_remove_tags(tmp_path: Path) -> None:
    models = write_devices(
        tmp_path,
        [
            enrolled("dev-a"),
            DeviceTagged(device_id="dev-a", tags={"rack": "r1", "env": "prod", "old": "x"}),
            DeviceTagged(device_id="dev-a", tags={"rack": "r2"}, removed=["old"]),
            DeviceTagged(device_id="dev-a", removed=["never-set"]),
        ],
    )
    [device] = (await page(models))["devices"]
    assert device["tags"] == {"env": "prod", "rack": "r2"}
    assert (await page(models, tag="rack=r1"))["devices"] == []
    assert (await devices_get(models, DeviceGet(id="dev-a")))["tags"] == {"env": "prod", "rack": "r2"}


async def test_a_device_tagged_before_its_enrolment_arrives_is_listed_and_keeps_its_tags(tmp_path: Path) -> None:
    models = write_devices(tmp_path, [DeviceTagged(device_id="dev-a", tags={"rack": "r1"}), enrolled("dev-a")])
    [device] = (await page(models, tag="rack=r1"))["devices"]
    assert (device["status"], device["tags"]) == ("enrolled", {"rack": "r1"})


async def test_devices_get_says_presence_site_and_tags(tmp_path: Path) -> None:
    models = write_devices(tmp_path, fleet(1))
    device = await devices_get(models, DeviceGet(id="dev-0000"))
    assert (device["presence"], device["site"], device["transport"], device["tags"]) == (
        "online", "north", "mqtt", {"env": "prod", "rack": "r7"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"limit": 0}', f"limit must be 1..{PAGE_MAX}"),
        (b'{"limit": 1001}', f"limit must be 1..{PAGE_MAX}"),
        (b'{"limit": "many"}', "Expected `int`, got `str` - at `$.limit`"),
        (b'{"presence": "maybe"}', "Invalid enum value 'maybe' - at `$.presence`"),
        (b'{"transport": "pigeon"}', "Invalid enum value 'pigeon' - at `$.transport`"),
        (b'{"site": "North Site"}', "at `$.site`"),
        (b'{"tag": "rack"}', "tag 'rack' is not key=value"),
        (b'{"tag": "Rack=r1"}', "tag key 'Rack' is not allowed"),
        (b'{"tag": "rack=r 1"}', "value 'r 1' of tag 'rack' is not allowed"),
        (b'{"colour": "red"}', "unknown field `colour`"),
    ],
)
async def test_bad_requests_are_refused_naming_what_is_wrong(tmp_path: Path, body: bytes, words: str) -> None:
    models = write_devices(tmp_path, fleet(3))
    with pytest.raises(QueryError) as refused:
        await devices_list(models, parse(DeviceList, body))
    assert refused.value.status == 400
    assert words in str(refused.value) and str(refused.value).startswith("bad request: ")


async def test_an_unbuilt_read_model_is_503(tmp_path: Path) -> None:
    with pytest.raises(QueryError) as refused:
        await devices_list(ReadModels(tmp_path, KEY), DeviceList())
    assert refused.value.status == 503


def test_online_means_seen_within_the_window_and_the_cursor_follows_a_page_with_more() -> None:
    now = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
    assert presence_cutoff(now) == (now - timedelta(seconds=PRESENCE_WINDOW_S)).isoformat()
    assert next_cursor(found=8, last="dev-7", limit=7) == "dev-7"
    assert next_cursor(found=7, last="dev-7", limit=7) is None
    assert next_cursor(found=0, last=None, limit=7) is None


async def test_a_prefix_finds_the_devices_whose_id_starts_with_it_page_by_page(tmp_path: Path) -> None:
    models = write_devices(tmp_path, fleet(250))
    found = await every_page(models, prefix="dev-01", limit=7)
    assert [d["device_id"] for d in found] == [f"dev-{n:04d}" for n in range(100, 200)]
    north = await every_page(models, prefix="dev-002", site="north", tag="rack=r7")
    assert [d["device_id"] for d in north] == ["dev-0021"]
    assert (await page(models, prefix="dev-9"))["devices"] == []
