"""Targets: the filter over rows of the devices read model, and the split into waves (pure)."""

from __future__ import annotations

from typing import Any

from core.campaigns.spec import CampaignSpec, CommandDocument, Document, Targets, Wave
from mahavishnu.campaigns.targets import matches, waves_of


def row(device: str, **fields: Any) -> dict[str, Any]:
    """A device as mesh.q.devices.list answers it."""
    return {
        "device_id": device,
        "status": "enrolled",
        "presence": "online",
        "last_seen": "2026-12-07T06:00:00+00:00",
        "transport": "agent",
        "site": None,
        "tags": {},
        **fields,
    }


def test_every_given_field_of_the_filter_must_match() -> None:
    pumps = Targets(tags={"role": "pump", "rack": "r7"}, transport="mqtt", presence="online")
    assert matches(pumps, row("a", transport="mqtt", tags={"role": "pump", "rack": "r7", "zone": "x"}))
    assert not matches(pumps, row("a", transport="mqtt", tags={"role": "pump"}))
    assert not matches(pumps, row("a", transport="agent", tags={"role": "pump", "rack": "r7"}))
    assert not matches(pumps, row("a", transport="mqtt", presence="offline", tags={"role": "pump", "rack": "r7"}))
    assert matches(Targets(site="north"), row("a", site="north"))
    assert not matches(Targets(site="north"), row("a"))


def test_an_explicit_list_matches_its_devices_only() -> None:
    listed = Targets(devices=["a", "b"])
    assert matches(listed, row("a"))
    assert not matches(listed, row("c"))


def test_only_devices_a_command_can_reach_are_targets() -> None:
    anything = Targets(presence="online")
    assert matches(anything, row("ssh-1", status="registered", transport="ssh"))
    assert not matches(anything, row("gone", status="revoked"))
    assert not matches(anything, row("seen", status="unknown"))


def spec(*waves: Wave) -> CampaignSpec:
    return CampaignSpec(
        name="w",
        document=Document(command=CommandDocument(name="ping")),
        targets=Targets(presence="online"),
        waves=list(waves),
    )


FLEET = [f"pump-{n:03}" for n in range(200)]


def test_without_waves_every_target_is_in_wave_zero() -> None:
    assert set(waves_of(FLEET, spec(), {}).values()) == {0}


def test_percentages_round_up_and_the_last_wave_takes_the_rest() -> None:
    waves = waves_of(FLEET, spec(Wave(percent=2.5), Wave(percent=20), Wave(percent=10)), {})
    sizes = [list(waves.values()).count(index) for index in range(3)]
    assert sizes == [5, 40, 155]
    assert sorted(waves) == FLEET
    few = waves_of(FLEET[:10], spec(Wave(percent=5), Wave(percent=95)), {})
    assert sorted(few.values()) == [0] + [1] * 9  # a 5% canary of 10 devices is one device


def test_the_split_is_the_same_every_time_and_spread_over_the_ids() -> None:
    split = spec(Wave(percent=10), Wave())
    first = waves_of(FLEET, split, {})
    assert waves_of(list(reversed(FLEET)), split, {}) == first
    canary = sorted(device for device, wave in first.items() if wave == 0)
    assert canary != FLEET[:20]
    assert int(canary[-1][-3:]) - int(canary[0][-3:]) > 100


def test_a_wave_by_tags_takes_the_targets_that_carry_them() -> None:
    tags = {device: {"rack": "r1" if index < 30 else "r2"} for index, device in enumerate(FLEET)}
    waves = waves_of(FLEET, spec(Wave(tags={"rack": "r1"}), Wave(percent=50), Wave()), tags)
    assert {device for device, wave in waves.items() if wave == 0} == set(FLEET[:30])
    assert list(waves.values()).count(1) == 100  # half of all 200 targets, from those left
    assert list(waves.values()).count(2) == 70
