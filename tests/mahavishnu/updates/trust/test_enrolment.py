"""A device gets the mesh's root.json with its certificate, enrolled by the operator or provisioned by claim,
and verifies an update with it alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from core import subjects
from core.store import EventStore, Identity, connect
from core.updates.naming import TRUSTED_DIR, TRUSTED_ROOT
from edge.updates.trust import verify_target
from mahavishnu.cli.agent_provision import provision
from mahavishnu.control import devices
from mahavishnu.identity import claiming
from mahavishnu.identity.provisioning import Limits
from mahavishnu.updates.trust import control
from tests.harness import Mesh, start_mesh
from tests.mahavishnu.updates.trust.harness import fresh_buckets


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    running = start_mesh(tmp_path_factory.mktemp("trust-enrolment"), provisioning=Limits())
    yield running
    running.stop()


async def test_before_the_trust_exists_a_device_gets_no_root_then_every_device_gets_the_current_one(
    mesh: Mesh, store: EventStore, tmp_path: Path
) -> None:
    await devices.enroll(mesh.home, mesh.settings, store, "dev-early", out_dir=tmp_path / "early")
    assert not (tmp_path / "early" / TRUSTED_DIR).exists()

    await fresh_buckets(store.js)
    assert await control.ensure_initialised(mesh.home)  # what `up` does at its start
    assert not await control.ensure_initialised(mesh.home)
    await control.refresh(mesh.home, store.js, store, actor="control")
    current = control.trust_files(mesh.home).current_root()

    await devices.enroll(mesh.home, mesh.settings, store, "dev-late", out_dir=tmp_path / "late")
    assert (tmp_path / "late" / TRUSTED_ROOT).read_bytes() == current

    created = await claiming.create(
        mesh.home,
        mesh.settings,
        store,
        prefix=f"t{uuid.uuid4().hex[:6]}-",
        url=mesh.identity.url,
        out=tmp_path / "claim.json",
        count=1,
        ttl=timedelta(hours=1),
    )
    device = f"{created.event.prefix}0"
    out = tmp_path / "claimed"
    await provision(created.path, device, out)
    assert (out / TRUSTED_ROOT).read_bytes() == current

    # The provisioned device verifies a target with what it was given, under its own permissions.
    await control.stage_target(
        mesh.home,
        store.js,
        store,
        name="fw",
        version="1.0.0",
        length=1,
        sha256="0f" * 32,
        device_type="pump",
        actor="ops",
    )
    identity = Identity(mesh.identity.url, out / "ca.pem", out / "cert.pem", out / "key.pem")
    nc = await connect(identity, name=device, reconnect=False, inbox_prefix=subjects.device_inbox_prefix(device))
    try:
        target = await verify_target(
            nc, out / TRUSTED_DIR, name="fw", version="1.0.0", device_type="pump", installed_version=None
        )
    finally:
        await nc.close()
    assert target.sha256 == "0f" * 32
