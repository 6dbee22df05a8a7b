"""Root rotation end to end: the mesh replaces a role's keys with a new root, devices enrolled with the old root
follow it, and what the revoked keys sign is refused from then on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client

from core.store import EventStore
from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.trust import verify_target
from mahavishnu.runtime.home import Home
from mahavishnu.updates.trust import control, rotation
from mahavishnu.updates.trust.policy import RoleKeys, TrustError
from tests.harness import Mesh
from tests.mahavishnu.updates.trust.harness import (
    PUMP,
    bucket_put,
    enrolled_device,
    fresh_buckets,
    give_root,
    online_signer,
    timestamp_at,
)


@pytest.fixture
async def device(
    mesh: Mesh, store: EventStore, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Client]:
    device_id = f"rot-{request.node.name[5:25].replace('_', '-').strip('-')}"
    nc = await enrolled_device(mesh, store, tmp_path / device_id, device_id)
    yield nc
    await nc.close()


async def verified_version(device: Client, trusted: Path, version: str) -> str:
    target = await verify_target(
        device, trusted, name="pump-fw", version=version, device_type="pump", installed_version=None
    )
    return target.version


async def test_a_rotated_timestamp_key_is_followed_and_the_revoked_one_refused(
    store: EventStore, device: Client, tmp_path: Path
) -> None:
    await fresh_buckets(store.js)
    home = Home(tmp_path / "home")
    await control.initialise(home)
    await control.stage_target(home, store.js, store, version="1.0.0", actor="ops", **PUMP)
    trusted = give_root(home, tmp_path / "trusted")  # root v1, as enrolled
    assert await verified_version(device, trusted, "1.0.0") == "1.0.0"
    revoked = online_signer(home, "timestamp")

    rotated = await rotation.rotate(home, store.js, store, role="timestamp", plan=RoleKeys(), actor="ops")
    assert [(e.role, e.version) for e in rotated.published] == [("root", 2), ("snapshot", 3), ("timestamp", 3)]
    assert online_signer(home, "timestamp").public_key.keyid != revoked.public_key.keyid
    assert await verified_version(device, trusted, "1.0.0") == "1.0.0"

    await bucket_put(store.js, "timestamp.json", timestamp_at(home, datetime.now(UTC), signer=revoked))
    with pytest.raises(UpdateRefused) as caught:
        await verified_version(device, trusted, "1.0.0")
    assert caught.value.refusal is Refusal.SIGNATURES


async def test_offline_root_keys_rotate_the_targets_keys_and_the_staged_target_is_signed(
    store: EventStore, device: Client, tmp_path: Path
) -> None:
    await fresh_buckets(store.js)
    home, offline = Home(tmp_path / "home"), tmp_path / "offline"
    await control.initialise(home, offline_dir=offline)
    await control.publish_all(home, store.js, store, actor="control")
    trusted = give_root(home, tmp_path / "trusted")
    await control.stage_target(home, store.js, store, version="2.0.0", actor="ops", **PUMP)

    with pytest.raises(TrustError, match="give the offline ones with --root-key"):
        await rotation.rotate(home, store.js, store, role="targets", plan=RoleKeys(), actor="ops")
    old_targets = sorted((offline / "targets").glob("*.key"))
    rotated = await rotation.rotate(
        home,
        store.js,
        store,
        role="targets",
        plan=RoleKeys(threshold=1, count=2),
        root_keys=sorted((offline / "root").glob("*.key")),
        offline_dir=offline,
        actor="ops",
    )
    assert ("root", 2) in {(e.role, e.version) for e in rotated.published}
    assert len(sorted((offline / "targets").glob("*.key"))) == len(old_targets) + 2  # offline files are the operator's
    assert not (home.root / "trust" / "keys" / "targets").exists()
    assert await verified_version(device, trusted, "2.0.0") == "2.0.0"


async def test_root_replaces_its_own_keys(store: EventStore, device: Client, tmp_path: Path) -> None:
    await fresh_buckets(store.js)
    home = Home(tmp_path / "home")
    await control.initialise(home)
    await control.stage_target(home, store.js, store, version="3.0.0", actor="ops", **PUMP)
    trusted = give_root(home, tmp_path / "trusted")
    old_root = online_signer(home, "root").public_key.keyid

    await rotation.rotate(home, store.js, store, role="root", plan=RoleKeys(), actor="ops")
    assert online_signer(home, "root").public_key.keyid != old_root
    assert not (home.root / "trust" / "keys" / "root" / f"{old_root}.key").exists()
    assert await verified_version(device, trusted, "3.0.0") == "3.0.0"
    assert control.summary(home)["roles"]["root"]["version"] == 2
