"""Each device's status for an artifact, and the fleet's counts (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.commands import CommandState
from projections.updates.compliance import UpdateSent, compliance, status

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def sent(
    device: str, state: CommandState, *, version: str = "2.0", ago_s: float = 60, ttl_s: float = 3600
) -> UpdateSent:
    return UpdateSent(device, "fw", version, state, NOW - timedelta(seconds=ago_s), ttl_s)


def test_an_update_under_way_is_pending_whatever_runs_now() -> None:
    for state in (CommandState.ISSUED, CommandState.ACCEPTED, CommandState.RUNNING):
        assert status("1.0", sent("a", state), "2.0", NOW) == "pending"
    assert status("2.0", sent("a", CommandState.RUNNING), "2.0", NOW) == "pending"


def test_an_update_past_its_ttl_never_taken_failed() -> None:
    assert status("1.0", sent("a", CommandState.ISSUED, ago_s=7200), "2.0", NOW) == "failed"


def test_running_the_latest_wins_over_an_earlier_failure() -> None:
    assert status("2.0", sent("a", CommandState.FAILED), "2.0", NOW) == "latest"
    assert status("1.0", sent("a", CommandState.FAILED), "2.0", NOW) == "failed"
    assert status("1.0", sent("a", CommandState.SUCCEEDED, version="1.0"), "2.0", NOW) == "outdated"
    assert status("1.0", None, "2.0", NOW) == "outdated"


def test_the_fleet_counts_each_device_once_per_artifact_by_its_last_update() -> None:
    versions = {"fw": ["1.0", "2.0", "1.10"], "boot": ["3"]}
    installed = {("a", "fw"): "2.0", ("b", "fw"): "1.0", ("c", "fw"): "1.0", ("d", "fw"): "1.10", ("a", "boot"): "3"}
    updates = [
        sent("b", CommandState.FAILED, ago_s=300),
        sent("b", CommandState.RUNNING, ago_s=10),  # its last one: under way
        sent("c", CommandState.RUNNING, ago_s=300),
        sent("c", CommandState.FAILED, ago_s=10),  # its last one: failed
        sent("e", CommandState.ISSUED, ago_s=5),  # a device that reports no version yet
    ]
    found = {report.name: report.as_json() for report in compliance(versions, installed, updates, NOW)}
    assert found["fw"] == {
        "name": "fw",
        "latest": "2.0",
        "devices": {"latest": 1, "pending": 2, "failed": 1, "outdated": 1},
        "total": 5,
    }
    assert found["boot"]["devices"] == {"latest": 1, "pending": 0, "failed": 0, "outdated": 0}
    gone = compliance({}, {("a", "old"): "1"}, [], NOW)  # every version removed: no latest to run
    assert [(r.name, r.latest, r.devices["outdated"]) for r in gone] == [("old", None, 1)]
