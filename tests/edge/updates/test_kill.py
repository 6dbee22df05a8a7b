"""kill -9 mid-update: before the switch the old version stays; after it, the next start rolls back and says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from core import subjects
from core.events import ReportedState
from core.store import EventStore
from core.updates.states import INSTALL_COMMAND, UpdateState
from edge.state import AgentState
from edge.updates.installers.ab import ABInstaller
from edge.updates.pipeline import recover
from edge.updates.record import Records
from mahavishnu.control import commands, devices
from tests.edge.updates.kit import LocalSteps, current, release, script, update
from tests.harness import Mesh
from tests.outcomes import follow_outcome
from tests.waiting import eventually, eventually_async

ROOT = Path(__file__).resolve().parents[3]


def python(module: str, *args: str, log: Path) -> subprocess.Popen[str]:
    """`python -m module args`, its output appended to `log` (shown when an assertion fails)."""
    with log.open("a") as output:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )


async def software_reports(store: EventStore, device: str) -> list[object]:
    """The "software" of each ReportedState the device sent, oldest first."""
    return [
        s.event.state.get("software")
        async for s in store.read(subjects.device_event(device, "reported"))
        if isinstance(s.event, ReportedState)
    ]


def kill_9(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


async def test_kill_9_during_install_leaves_the_old_version_and_the_next_start_says_so(tmp_path: Path) -> None:
    slots = ABInstaller(tmp_path / "app")
    state_path = tmp_path / "state.lmdb"
    with AgentState(state_path) as state:
        await update(Records(state), slots, LocalSteps({"1.0": release(tmp_path, "1.0")}), "1.0", work=tmp_path)
    marker = tmp_path / "unpacked"

    process = python(
        "tests.edge.updates.pipeline_process",
        str(state_path),
        str(slots.root),
        str(release(tmp_path, "2.0")),
        "2.0",
        str(marker),
        log=tmp_path / "process.log",
    )
    try:
        await eventually(lambda: marker.exists() or process.poll() is not None, timeout=60, what="the install")
        assert marker.exists(), (tmp_path / "process.log").read_text()
    finally:
        kill_9(process)

    assert os.readlink(slots.root / "current") == "a" and current(slots) == "1.0"  # nothing switched
    with AgentState(state_path) as state:
        records = Records(state)
        assert [(r.command_id, r.state) for r in records.unended()] == [("c-killed", UpdateState.INSTALLING)]
        [ended] = await recover(records, slots)
        assert ended.result() == {
            "state": "failed",
            "name": "app",
            "version": "2.0",
            "previous": "1.0",
            "reason": "the agent stopped before the update was committed (while installing); 1.0 stays active",
        }
        assert records.installed() == {"app": "1.0"} and current(slots) == "1.0"
        # The slot left half-made is simply replaced by the next install.
        again = await update(records, slots, LocalSteps({"2.0": release(tmp_path, "2.0")}), "2.0", work=tmp_path)
        assert again.state == UpdateState.COMMITTED and current(slots) == "2.0"


async def test_an_update_switched_but_not_committed_when_the_agent_died_is_rolled_back_at_its_next_start(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    device = "dev-update-kill"
    enrolment = await devices.enroll(
        mesh.home, mesh.settings, store, device, out_dir=tmp_path / "dev", url=mesh.identity.url
    )
    slots = tmp_path / "app"
    marker = tmp_path / "checking"
    # The health check hangs for 2.0 (the agent is killed while it runs) and passes for 1.0.
    check = script(
        tmp_path / "bin",
        "check",
        f'if [ "$MAHAVISHNU_ARTIFACT_VERSION" = 2.0 ]; then echo $$ > {marker}; exec sleep 600; fi',
    )
    with enrolment.agent_config.open("a") as config:
        config.write(
            f'\n[update]\ndevice_type = "pump"\ninstaller = "ab"\nslots = "{slots}"\n'
            f'health_check = "{check}"\ncommit_timeout = 300\n'
        )
    files = json.dumps({v: str(release(tmp_path, v)) for v in ("1.0", "2.0")})
    agent = python("tests.edge.updates.agent_process", str(enrolment.agent_config), files, log=tmp_path / "agent.log")
    try:
        first = await commands.send(
            store, device, INSTALL_COMMAND, {"name": "app", "version": "1.0"}, ttl_s=300, timeout_s=300, actor="control"
        )
        view = await follow_outcome(store, first, deadline_s=60)
        assert (view.state, view.result["state"]) == ("succeeded", "committed"), (
            view,
            (tmp_path / "agent.log").read_text(),
        )
        second = await commands.send(
            store, device, INSTALL_COMMAND, {"name": "app", "version": "2.0"}, ttl_s=300, timeout_s=300, actor="control"
        )
        await eventually(lambda: marker.exists() and marker.read_text().strip(), timeout=60, what="the health check")
    finally:
        kill_9(agent)
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the hung check, orphaned by the kill
    assert os.readlink(slots / "current") == "b"  # switched, never committed
    before = len(await software_reports(store, device))

    agent = python("tests.edge.updates.agent_process", str(enrolment.agent_config), files, log=tmp_path / "agent.log")
    try:
        view = await follow_outcome(store, second, deadline_s=60)
        assert view.state == "failed", (view, (tmp_path / "agent.log").read_text())
        assert view.detail == "update rolled back: the agent stopped before the update was committed; rolled back"
        assert os.readlink(slots / "current") == "a" and (slots / "current" / "VERSION").read_text() == "1.0"

        async def reported_one_point_oh_since_the_restart() -> bool:
            reports = await software_reports(store, device)
            return len(reports) > before and reports[-1] == {"app": "1.0"}

        await eventually_async(reported_one_point_oh_since_the_restart, timeout=30, what="the software report")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)
