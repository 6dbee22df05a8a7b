"""devices.summary over a real devices read model: online, offline, never seen, revoked; by site and transport."""

from __future__ import annotations

from pathlib import Path

from core.events import DeviceRevoked
from projections.fleet_summary import FleetSummary, devices_summary, summarize
from tests.projections.device_fleet import fleet, write_devices


def counts(devices: int, online: int, offline: int, never_seen: int, revoked: int) -> dict[str, int]:
    return {"devices": devices, "online": online, "offline": offline, "never_seen": never_seen, "revoked": revoked}


async def test_the_fleet_is_counted_by_state_site_and_transport(tmp_path: Path) -> None:
    # 20 devices: even ones online, n % 4 == 1 offline (heard long ago), n % 4 == 3 never seen;
    # every third at north, every fifth over MQTT. dev-0000 (online) and dev-0003 (never seen) are revoked.
    events = [
        *fleet(20),
        DeviceRevoked(device_id="dev-0000", serials=["1f"]),
        DeviceRevoked(device_id="dev-0003", serials=["1f"]),
    ]
    answer = await devices_summary(write_devices(tmp_path, events), FleetSummary())
    assert answer["total"] == counts(20, 9, 5, 4, 2)
    assert answer["by_site"] == [
        {"site": "", **counts(13, 6, 4, 3, 0)},
        {"site": "north", **counts(7, 3, 1, 1, 2)},
    ]
    assert answer["by_transport"] == [
        {"transport": "agent", **counts(16, 8, 4, 3, 1)},
        {"transport": "mqtt", **counts(4, 1, 1, 1, 1)},
    ]


def test_an_empty_fleet_is_all_zeros() -> None:
    assert summarize([]) == {"total": counts(0, 0, 0, 0, 0), "by_site": [], "by_transport": []}
