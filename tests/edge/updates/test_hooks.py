"""The hook-script installer: Mender's states, their Enter/Leave/Error scripts in order, a small environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.updates.states import UpdateState
from edge.state import AgentState
from edge.updates.installers import Update
from edge.updates.installers.hooks import STATES, HooksInstaller, scripts
from edge.updates.pipeline import Checks, recover
from edge.updates.process import OUTPUT_LIMIT
from edge.updates.record import Records
from tests.edge.updates.kit import LocalSteps, release, script, update

LOGS = '"$(basename "$0") $MAHAVISHNU_UPDATE_STATE $MAHAVISHNU_ARTIFACT_VERSION $MAHAVISHNU_PREVIOUS_VERSION"'


def hooks(folder: Path, log: Path, *, failing: str = "") -> HooksInstaller:
    """Two Enter and one Leave and one Error script per state, each writing a line to `log`; `failing` exits 1."""
    for state in STATES:
        for name in (f"{state}_Enter_00", f"{state}_Enter_01_second", f"{state}_Leave_00", f"{state}_Error_00"):
            script(folder, name, f"echo {LOGS} >> {log}" + ("; exit 1" if name == failing else ""))
    (folder / "README").write_text("not a script: ignored")
    (folder / "ArtifactInstall_Enter_00.bak").write_text("does not match the naming: ignored")
    return HooksInstaller(folder, timeout=10)


def lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def ran(log: Path) -> list[str]:
    return [line.split()[0] for line in lines(log)]


def steps_of(*states: str) -> list[str]:
    return [name for s in states for name in (f"{s}_Enter_00", f"{s}_Enter_01_second", f"{s}_Leave_00")]


@pytest.fixture
def steps(tmp_path: Path) -> LocalSteps:
    return LocalSteps({v: release(tmp_path, v) for v in ("1.0", "2.0")})


async def test_each_state_runs_its_enter_then_leave_scripts_in_order(
    state: AgentState, steps: LocalSteps, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    installer = hooks(tmp_path / "hooks", log)
    records = Records(state)
    await update(records, installer, steps, "1.0", work=tmp_path)
    log.unlink()

    done = await update(records, installer, steps, "2.0", work=tmp_path)

    assert done.state == UpdateState.COMMITTED
    assert ran(log) == steps_of("Download", "ArtifactInstall", "ArtifactReboot", "ArtifactCommit")
    assert lines(log)[0] == "Download_Enter_00 Download 2.0 1.0"
    assert lines(log)[-1] == "ArtifactCommit_Leave_00 ArtifactCommit 2.0 1.0"
    assert records.installed() == {"app": "2.0"}


async def test_a_failing_commit_script_runs_the_error_scripts_then_rolls_back(
    state: AgentState, steps: LocalSteps, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    installer = hooks(tmp_path / "hooks", log, failing="ArtifactCommit_Enter_01_second")

    done = await update(Records(state), installer, steps, "1.0", work=tmp_path)

    assert done.state == UpdateState.ROLLED_BACK
    assert done.reason == "the commit failed (ArtifactCommit: ArtifactCommit_Enter_01_second exited 1)"
    assert ran(log) == [
        *steps_of("Download", "ArtifactInstall", "ArtifactReboot"),
        "ArtifactCommit_Enter_00",
        "ArtifactCommit_Enter_01_second",
        "ArtifactCommit_Error_00",
        *steps_of("ArtifactRollback", "ArtifactFailure"),
    ]
    assert Records(state).installed() == {}


async def test_a_failing_install_script_fails_the_update_before_any_switch(
    state: AgentState, steps: LocalSteps, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    installer = hooks(tmp_path / "hooks", log, failing="ArtifactInstall_Leave_00")

    done = await update(Records(state), installer, steps, "1.0", work=tmp_path)

    assert done.state == UpdateState.FAILED
    assert done.reason.startswith("install failed (ArtifactInstall: ArtifactInstall_Leave_00 exited 1)")
    assert "ArtifactReboot_Enter_00" not in ran(log)
    assert ran(log)[-8:] == [
        "ArtifactInstall_Leave_00",
        "ArtifactInstall_Error_00",
        *steps_of("ArtifactRollback", "ArtifactFailure"),
    ]


async def test_a_failing_download_script_runs_the_download_error_scripts(
    state: AgentState, steps: LocalSteps, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    installer = hooks(tmp_path / "hooks", log, failing="Download_Enter_00")
    done = await update(Records(state), installer, steps, "1.0", work=tmp_path)
    assert done.state == UpdateState.FAILED and "Download: Download_Enter_00 exited 1" in done.reason
    assert ran(log) == ["Download_Enter_00", "Download_Error_00"]


async def test_a_script_sees_the_artifact_and_versions_but_not_the_agents_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAHAVISHNU_TEST_TOKEN", "s3cret-value")
    seen = tmp_path / "env"
    script(tmp_path / "hooks", "ArtifactInstall_Enter_00", f"env > {seen}")
    artifact = tmp_path / "app.tar.gz"

    await HooksInstaller(tmp_path / "hooks", timeout=10).install(
        artifact, Update(name="app", version="2.0", previous="1.0")
    )

    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert env["MAHAVISHNU_ARTIFACT"] == str(artifact)
    assert env["MAHAVISHNU_ARTIFACT_NAME"] == "app"
    assert env["MAHAVISHNU_ARTIFACT_VERSION"] == "2.0" and env["MAHAVISHNU_PREVIOUS_VERSION"] == "1.0"
    assert "MAHAVISHNU_TEST_TOKEN" not in env and "s3cret-value" not in seen.read_text()


async def test_a_scripts_output_is_bounded_and_redacted_and_a_hung_script_times_out(tmp_path: Path) -> None:
    folder = tmp_path / "hooks"
    script(
        folder, "ArtifactInstall_Enter_00", "head -c 1000000 /dev/zero | tr '\\0' x; echo; echo token=abc123; exit 2"
    )
    installer = HooksInstaller(folder, timeout=10)
    with pytest.raises(Exception, match=r"exited 2: token=\[REDACTED:token\]$") as failed:
        await installer.install(tmp_path / "a", Update(name="app", version="1"))
    assert len(str(failed.value)) < OUTPUT_LIMIT

    pid_file = tmp_path / "pid"
    script(folder, "ArtifactReboot_Enter_00", f"echo $$ > {pid_file}; exec sleep 600")
    with pytest.raises(Exception, match=r"ArtifactReboot_Enter_00 timed out"):
        await HooksInstaller(folder, timeout=0.5).activate(Update(name="app", version="1"), {})
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_a_script_that_is_not_executable_fails_its_state(tmp_path: Path) -> None:
    folder = tmp_path / "hooks"
    script(folder, "ArtifactCommit_Enter_00", "exit 0").chmod(0o644)
    with pytest.raises(Exception, match="is not executable; chmod"):
        await HooksInstaller(folder, timeout=5).commit(Update(name="app", version="1"), {})


def test_scripts_are_found_by_mender_naming_in_order(tmp_path: Path) -> None:
    for name in (
        "ArtifactInstall_Enter_10",
        "ArtifactInstall_Enter_02_b",
        "ArtifactInstall_Leave_00",
        "Bogus_Enter_00",
    ):
        script(tmp_path, name, "true")
    assert [p.name for p in scripts(tmp_path, "ArtifactInstall", "Enter")] == [
        "ArtifactInstall_Enter_02_b",
        "ArtifactInstall_Enter_10",
    ]
    assert scripts(tmp_path / "missing", "ArtifactInstall", "Enter") == []


async def test_commit_hooks_are_the_health_check_when_there_is_none_and_a_command_runs_first(
    state: AgentState, steps: LocalSteps, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    installer = hooks(tmp_path / "hooks", log)
    check = script(tmp_path / "bin", "check", f"echo health >> {log}")
    done = await update(
        Records(state), installer, steps, "1.0", work=tmp_path, checks=Checks(health_check=(str(check),))
    )
    assert done.state == UpdateState.COMMITTED
    assert ran(log)[-4:] == ["health", *steps_of("ArtifactCommit")]


async def test_at_start_an_install_cut_short_runs_rollback_and_failure_and_a_download_cut_short_runs_nothing(
    state: AgentState, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    installer = hooks(tmp_path / "hooks", log)
    records = Records(state)
    await records.begin("c-download", "app", "1.0")
    await records.move(await records.begin("c-install", "app", "2.0"), UpdateState.INSTALLING)

    ended = {record.command_id: record for record in await recover(records, installer)}

    assert ran(log) == steps_of("ArtifactRollback", "ArtifactFailure")
    assert {command: record.state for command, record in ended.items()} == {
        "c-download": UpdateState.FAILED,
        "c-install": UpdateState.FAILED,
    }
    assert ended["c-download"].reason == (
        "the agent stopped before the update was committed (while downloading); the installed version stays active"
    )
