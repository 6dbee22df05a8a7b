"""An update end to end, with nothing stood in: `artifact add`'s steps sign the target, a real edge-only agent
(no pyca/cryptography, its root.json from enrolment) verifies it with python-tuf, downloads it, installs and
commits; a target for another device type and a downgrade are refused, the installed version untouched."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.commands import CommandState
from core.store import EventStore
from core.updates.naming import TRUSTED_ROOT
from mahavishnu.control import commands, devices
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.updates import artifacts
from mahavishnu.updates.trust import control
from tests.edge.updates.kit import release
from tests.harness import Mesh
from tests.mahavishnu.cli.test_agent import agent_process
from tests.outcomes import follow_outcome


async def add(mesh: Mesh, store: EventStore, path: Path, version: str, device_type: str = "pump") -> None:
    """What `mahavishnu artifact add` does: store the bytes, then sign the target (the mesh's keys are online)."""
    added = await artifacts.add(store, path, name="app", version=version, device_type=device_type, actor="control")
    await control.stage_target(
        mesh.home,
        store.js,
        store,
        name="app",
        version=version,
        length=added.length,
        sha256=added.sha256,
        device_type=device_type,
        depends=added.depends,
        actor="control",
    )


@pytest.fixture
async def device(mesh: Mesh, store: EventStore, tmp_path: Path) -> AsyncIterator[str]:
    """An agent with [update] (A/B slots), enrolled once the mesh's trust exists, running as a device runs it."""
    await ensure_update_buckets(store.js, replicas=1)
    await control.ensure_initialised(mesh.home)
    await control.refresh(mesh.home, store.js, store, actor="control")
    device_id = f"upd-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / device_id
    enrolment = await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=folder, url=mesh.identity.url)
    assert (folder / TRUSTED_ROOT).is_file()
    with enrolment.agent_config.open("a") as config:
        config.write('\n[update]\ndevice_type = "pump"\ninstaller = "ab"\nslots = "app"\n')
    agent = agent_process("agent", "run", "--config", str(enrolment.agent_config))
    yield device_id
    agent.terminate()
    _, err = agent.communicate(timeout=30)
    assert "Traceback" not in err, err


async def install(store: EventStore, device: str, version: str, **extra: Any) -> commands.CommandView:
    issued = await commands.send(
        store,
        device,
        "update.install",
        {"name": "app", "version": version, **extra},
        ttl_s=120,
        timeout_s=60,
        actor="control",
    )
    return await follow_outcome(store, issued, deadline_s=90)


async def test_a_signed_update_is_installed_and_a_wrong_type_or_a_downgrade_refused(
    mesh: Mesh, store: EventStore, device: str, tmp_path: Path
) -> None:
    version = f"2.{uuid.uuid4().int % 1000}"
    await add(mesh, store, release(tmp_path, "1.0"), "1.0")
    await add(mesh, store, release(tmp_path, version), version)
    await add(mesh, store, release(tmp_path, "9.0"), "9.0", device_type="valve")

    done = await install(store, device, version)
    assert done.state is CommandState.SUCCEEDED, done.detail
    assert (done.result["state"], done.result["version"]) == ("committed", version)
    app = tmp_path / device / "app" / "current" / "VERSION"
    assert app.read_text() == version

    other = await install(store, device, "9.0")
    assert other.state is CommandState.FAILED
    assert other.detail.startswith("update refused (device_type)"), other.detail
    older = await install(store, device, "1.0")
    assert older.detail.startswith("update refused (downgrade)"), older.detail
    unknown = await install(store, device, "7.7.7")
    assert unknown.detail.startswith("update refused (unknown_target)"), unknown.detail
    assert app.read_text() == version
