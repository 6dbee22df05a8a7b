"""The SSH gateway verifies its hosts' updates with the real verifier: the mesh's root.json given to its trust
folder when it starts, the target signed by the mesh, a downgrade refused before anything on the host changes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.store import EventStore
from core.updates.states import INSTALL_COMMAND
from mahavishnu.control import commands
from mahavishnu.gateways.ssh.gateway import SshGateway
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.updates import artifacts as artifact_store
from mahavishnu.updates.trust import control
from tests.edge.updates.kit import release
from tests.harness import Mesh
from tests.mahavishnu.gateways.ssh.test_updates import DEVICE_TYPE, FAST, add_host
from tests.mahavishnu.sshd import Sshd, start_sshd
from tests.outcomes import follow_outcome


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


async def test_a_host_gets_a_signed_update_and_a_downgrade_is_refused(
    mesh: Mesh, store: EventStore, sshd: Sshd, tmp_path: Path
) -> None:
    await ensure_update_buckets(store.js, replicas=1)
    await control.ensure_initialised(mesh.home)
    name = f"app-{uuid.uuid4().hex[:8]}"
    for version in ("1.0", "2.0"):
        added = await artifact_store.add(
            store, release(tmp_path, version), name=name, version=version, device_type=DEVICE_TYPE, actor="olga"
        )
        await control.stage_target(
            mesh.home, store.js, store, name=name, version=version, length=added.length, sha256=added.sha256,
            device_type=DEVICE_TYPE, actor="olga",
        )  # fmt: skip
    host = await add_host(mesh, store, sshd, tmp_path)

    gateway = SshGateway(store, mesh.home.root, FAST)  # the real verify and download
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop))
    try:
        views = []
        for version in ("2.0", "1.0"):
            command = await commands.send(
                store, host.device_id, INSTALL_COMMAND, {"name": name, "version": version}, ttl_s=60, timeout_s=300,
                actor="control",
            )  # fmt: skip
            views.append(await follow_outcome(store, command, deadline_s=60))
    finally:
        stop.set()
        await task
    assert (gateway.updates.trust_dir / "root.json").exists()
    assert views[0].result == {"state": "committed", "name": name, "version": "2.0", "previous": None}, views[0]
    assert views[1].detail.startswith("update refused (downgrade)"), views[1]
    assert host.current() == "2.0"
