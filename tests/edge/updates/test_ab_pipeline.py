"""An update's life with the A/B installer, on real files: install, switch, health check, commit or roll back."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from core.updates.states import UpdateState
from edge.state import AgentState
from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.installers.ab import ABInstaller
from edge.updates.pipeline import Checks
from edge.updates.record import Records
from tests.edge.updates.kit import LocalSteps, artifact, current, release, script, update
from tests.waiting import eventually


@pytest.fixture
def records(state: AgentState) -> Records:
    return Records(state)


@pytest.fixture
def slots(tmp_path: Path) -> ABInstaller:
    return ABInstaller(tmp_path / "app")


@pytest.fixture
def steps(tmp_path: Path) -> LocalSteps:
    return LocalSteps({v: release(tmp_path, v) for v in ("1.0", "2.0")})


async def test_an_update_installs_into_the_other_slot_switches_and_commits(
    records: Records, slots: ABInstaller, steps: LocalSteps, tmp_path: Path
) -> None:
    first = await update(records, slots, steps, "1.0", work=tmp_path)
    assert first.result() == {"state": "committed", "name": "app", "version": "1.0", "previous": None}
    assert os.readlink(slots.root / "current") == "a" and current(slots) == "1.0"
    assert (slots.root / "current" / "run").resolve() == (slots.root / "a" / "bin" / "run").resolve()

    second = await update(records, slots, steps, "2.0", work=tmp_path)
    assert second.result() == {"state": "committed", "name": "app", "version": "2.0", "previous": "1.0"}
    assert os.readlink(slots.root / "current") == "b" and current(slots) == "2.0"
    assert (slots.root / "a" / "VERSION").read_text() == "1.0"  # the old slot stays, for a manual rollback
    assert slots.active_version() == "2.0" and records.installed() == {"app": "2.0"}
    assert [a["installed_version"] for a in steps.asked] == [None, "1.0"]
    assert not list((tmp_path / "downloads").iterdir())  # the downloaded artifact goes once installed


async def test_a_failing_health_check_rolls_back_to_the_old_slot(
    records: Records, slots: ABInstaller, steps: LocalSteps, tmp_path: Path
) -> None:
    await update(records, slots, steps, "1.0", work=tmp_path)
    check = script(tmp_path / "bin", "check", 'echo "v$MAHAVISHNU_ARTIFACT_VERSION is sick password=hunter2"; exit 3')
    checks = Checks(health_check=(str(check),), commit_timeout=5)

    async with asyncio.timeout(checks.commit_timeout + 10):  # the bound, as a deadline
        rolled = await update(records, slots, steps, "2.0", work=tmp_path, checks=checks)

    assert rolled.state == UpdateState.ROLLED_BACK
    assert rolled.reason == "the health check failed (exited 3: v2.0 is sick password=[REDACTED:password])"
    assert os.readlink(slots.root / "current") == "a" and current(slots) == "1.0"
    assert records.installed() == {"app": "1.0"}  # the counter did not move


async def test_a_health_check_that_hangs_past_commit_timeout_is_killed_and_rolled_back(
    records: Records, slots: ABInstaller, steps: LocalSteps, tmp_path: Path
) -> None:
    await update(records, slots, steps, "1.0", work=tmp_path)
    pid_file = tmp_path / "check.pid"
    check = script(tmp_path / "bin", "check", f"echo $$ > {pid_file}; exec sleep 600")
    checks = Checks(health_check=(str(check),), commit_timeout=1)

    async with asyncio.timeout(checks.commit_timeout + 10):
        rolled = await update(records, slots, steps, "2.0", work=tmp_path, checks=checks)

    assert rolled.state == UpdateState.ROLLED_BACK
    assert rolled.reason == "the health check and commit did not pass within commit_timeout (1 s)"
    assert current(slots) == "1.0"
    with pytest.raises(ProcessLookupError):  # the hung check was killed, not left behind
        os.kill(int(pid_file.read_text()), 0)


async def test_an_artifact_that_would_escape_its_slot_changes_nothing(
    records: Records, slots: ABInstaller, steps: LocalSteps, tmp_path: Path
) -> None:
    await update(records, slots, steps, "1.0", work=tmp_path)
    before = sorted(p.name for p in slots.root.iterdir())
    evil = {
        "2.1": artifact(tmp_path / "dotdot.tar.gz", {"VERSION": b"2.1", "../../owned": b"x"}),
        "2.2": artifact(tmp_path / "abs.tar.gz", {"VERSION": b"2.2", "/tmp/owned": b"x"}),
        "2.3": artifact(tmp_path / "link.tar.gz", {"VERSION": b"2.3"}, links={"etc": "../../../etc"}),
    }
    bad = LocalSteps(evil)
    for version in evil:
        failed = await update(records, slots, bad, version, work=tmp_path)
        assert failed.state == UpdateState.FAILED, failed
        assert "is refused" in failed.reason and failed.reason.endswith("1.0 stays active"), failed.reason
    assert sorted(p.name for p in slots.root.iterdir()) == before
    assert current(slots) == "1.0" and records.installed() == {"app": "1.0"}
    assert not (tmp_path / "owned").exists()


async def test_a_refused_update_changes_nothing(records: Records, slots: ABInstaller, tmp_path: Path) -> None:
    steps = LocalSteps({"1.0": release(tmp_path, "1.0"), "0.9": release(tmp_path, "0.9")})
    await update(records, slots, steps, "1.0", work=tmp_path)
    steps.refuse = UpdateRefused(Refusal.DOWNGRADE, "0.9 is older than the installed 1.0")

    refused = await update(records, slots, steps, "0.9", work=tmp_path)

    assert refused.result() == {
        "state": "refused",
        "name": "app",
        "version": "0.9",
        "previous": "1.0",
        "reason": "update refused (downgrade): 0.9 is older than the installed 1.0",
        "refusal": "downgrade",
    }
    assert current(slots) == "1.0" and records.installed() == {"app": "1.0"}
    assert steps.asked[-1] == {
        "name": "app",
        "version": "0.9",
        "installed_version": "1.0",
        "allow_downgrade": False,
        "installed": {"app": "1.0"},
    }


async def test_the_anti_rollback_counter_survives_a_restart(slots: ABInstaller, tmp_path: Path) -> None:
    steps = LocalSteps({v: release(tmp_path, v) for v in ("1.0", "2.0", "1.5")})
    with AgentState(tmp_path / "state.lmdb") as state:
        await update(Records(state), slots, steps, "2.0", work=tmp_path)
    with AgentState(tmp_path / "state.lmdb") as state:
        records = Records(state)
        assert records.installed_version("app") == "2.0"
        await update(records, slots, steps, "1.5", work=tmp_path, allow_downgrade=True)
    assert steps.asked[-1]["installed_version"] == "2.0" and steps.asked[-1]["allow_downgrade"] is True
    with AgentState(tmp_path / "state.lmdb") as state:
        # An allowed downgrade is the operator's choice: it is the new baseline.
        assert Records(state).installed_version("app") == "1.5"


async def test_the_same_command_is_never_run_twice(
    records: Records, slots: ABInstaller, steps: LocalSteps, tmp_path: Path
) -> None:
    first = await update(records, slots, steps, "1.0", work=tmp_path, command_id="c-1")
    again = await update(records, slots, steps, "1.0", work=tmp_path, command_id="c-1")
    assert again == first and len(steps.asked) == 1


async def test_an_update_stopped_by_its_commands_timeout_after_the_switch_is_rolled_back_at_once(
    records: Records, slots: ABInstaller, steps: LocalSteps, tmp_path: Path
) -> None:
    await update(records, slots, steps, "1.0", work=tmp_path)
    marker = tmp_path / "checking"
    check = script(tmp_path / "bin", "check", f"touch {marker}; exec sleep 600")
    checks = Checks(health_check=(str(check),), commit_timeout=300)
    running = asyncio.create_task(update(records, slots, steps, "2.0", work=tmp_path, checks=checks))
    await eventually(marker.exists, timeout=30, what="the health check to start")
    assert os.readlink(slots.root / "current") == "b"

    running.cancel()  # what the agent does when the command's timeout_s passes
    with pytest.raises(asyncio.CancelledError):
        await running

    record = records.get("cmd-2.0")
    assert record is not None and record.state == UpdateState.ROLLED_BACK
    assert record.reason == "the update was stopped; rolled back"
    assert current(slots) == "1.0" and records.installed() == {"app": "1.0"}
