"""The device's verifier on a real server, under a device's own permissions: the happy path and each refusal.

The metadata is signed with the mesh's real keys (mahavishnu.updates.trust); the attacks
are made the way an attacker with write access to the bucket would: older, expired,
mismatched or foreign-signed files stored under the names the device reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats.errors
import pytest
from nats.aio.client import Client
from tuf.api.metadata import Metadata

from core.store import EventStore
from core.updates.naming import METADATA_STREAM
from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.trust import MetadataUnavailable, VerifiedTarget, verify_target
from mahavishnu.runtime.home import Home
from mahavishnu.updates.trust import control, keys, metadata
from tests.harness import Mesh
from tests.mahavishnu.updates.trust.harness import (
    PUMP,
    bucket_get,
    bucket_put,
    enrolled_device,
    fresh_buckets,
    give_root,
    online_signer,
    timestamp_at,
)


@pytest.fixture
async def trust_home(tmp_path: Path, store: EventStore) -> AsyncIterator[Home]:
    await fresh_buckets(store.js)
    home = Home(tmp_path / "home")
    await control.initialise(home)
    await control.stage_target(home, store.js, store, version="1.2.0", depends=("base@1.0",), actor="ops", **PUMP)
    yield home


@pytest.fixture
async def device(
    mesh: Mesh, store: EventStore, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Client]:
    device_id = f"dev-{request.node.name[5:30].replace('_', '-').strip('-')}"
    nc = await enrolled_device(mesh, store, tmp_path / device_id, device_id)
    yield nc
    await nc.close()


async def verify(device: Client, trusted: Path, version: str = "1.2.0", **kwargs: object) -> VerifiedTarget:
    arguments: dict[str, object] = {"device_type": "pump", "installed_version": None} | kwargs
    return await verify_target(device, trusted, name="pump-fw", version=version, **arguments)  # type: ignore[arg-type]


async def refused(device: Client, trusted: Path, version: str = "1.2.0", **kwargs: object) -> UpdateRefused:
    with pytest.raises(UpdateRefused) as caught:
        await verify(device, trusted, version, **kwargs)
    return caught.value


async def test_a_signed_target_is_verified_under_the_devices_own_permissions(
    trust_home: Home, device: Client, tmp_path: Path
) -> None:
    trusted = give_root(trust_home, tmp_path / "trusted")
    target = await verify(device, trusted, installed_version="1.1.9", installed={"base": "1.0.1"})

    assert target == VerifiedTarget(
        name="pump-fw", version="1.2.0", length=5, sha256="ab" * 32, device_type="pump", depends=("base@1.0",)
    )
    # What it trusts now persists beside the root it was given.
    assert {"timestamp.json", "snapshot.json", "targets.json", "root.json"} <= {p.name for p in trusted.iterdir()}


async def test_an_unknown_target_another_device_type_a_downgrade_and_a_missing_dependency_are_refused(
    trust_home: Home, device: Client, tmp_path: Path
) -> None:
    trusted = give_root(trust_home, tmp_path / "trusted")

    unknown = await refused(device, trusted, "9.9.9")
    assert unknown.refusal is Refusal.UNKNOWN_TARGET
    assert "pump-fw/9.9.9 is not in the signed targets" in str(unknown)
    assert (await refused(device, trusted, device_type="valve")).refusal is Refusal.DEVICE_TYPE
    downgrade = await refused(device, trusted, installed_version="1.10.0")
    assert downgrade.refusal is Refusal.DOWNGRADE
    assert str(downgrade) == (
        "update refused (downgrade): pump-fw 1.2.0 is older than the installed 1.10.0: "
        "the campaign must allow a downgrade"
    )
    assert (await verify(device, trusted, installed_version="1.10.0", allow_downgrade=True)).version == "1.2.0"
    assert (await refused(device, trusted, installed={"base": "0.9"})).refusal is Refusal.DEPENDS
    assert (await refused(device, trusted, installed={})).refusal is Refusal.DEPENDS


async def test_a_rolled_back_timestamp_is_refused_also_after_a_restart(
    trust_home: Home, store: EventStore, device: Client, tmp_path: Path
) -> None:
    trusted = give_root(trust_home, tmp_path / "trusted")
    await verify(device, trusted)
    old = await bucket_get(store.js, "timestamp.json")
    await control.stage_target(trust_home, store.js, store, version="1.3.0", actor="ops", **PUMP)
    await verify(device, trusted, "1.3.0")  # the device now trusts the newer timestamp

    await bucket_put(store.js, "timestamp.json", old)
    # Each verification starts python-tuf afresh from trusted_dir, as an agent after a restart.
    rollback = await refused(device, trusted, "1.2.0")
    assert rollback.refusal is Refusal.ROLLBACK
    assert "must be >=" in str(rollback)


async def test_expired_metadata_is_refused(trust_home: Home, store: EventStore, device: Client, tmp_path: Path) -> None:
    trusted = give_root(trust_home, tmp_path / "trusted")
    await bucket_put(store.js, "timestamp.json", timestamp_at(trust_home, datetime.now(UTC) - timedelta(days=2)))

    freeze = await refused(device, trusted)
    assert freeze.refusal is Refusal.FREEZE
    assert "timestamp.json is expired" in str(freeze)


async def test_a_targets_file_that_the_snapshot_does_not_name_is_refused(
    trust_home: Home, store: EventStore, device: Client, tmp_path: Path
) -> None:
    trusted = give_root(trust_home, tmp_path / "trusted")
    # The same version of targets, validly signed by the targets key, but not the file the
    # snapshot names (another target mixed in): its hash differs.
    genuine = Metadata.from_bytes(await bucket_get(store.js, "2.targets.json"))
    mixed = metadata.next_targets(
        genuine.signed,
        datetime.now(UTC),
        add=metadata.target_file(
            name="evil", version="6.6.6", length=1, sha256="00" * 32, device_type="pump", depends=()
        ),
    )
    mixed.signed.version = 2
    mixed.sign(online_signer(trust_home, "targets"))
    await bucket_put(store.js, "2.targets.json", metadata.to_bytes(mixed))

    mix = await refused(device, trusted)
    assert mix.refusal is Refusal.MIX_AND_MATCH


async def test_metadata_signed_by_a_strangers_key_is_refused(
    trust_home: Home, store: EventStore, device: Client, tmp_path: Path
) -> None:
    trusted = give_root(trust_home, tmp_path / "trusted")
    stranger = keys.generate()
    await bucket_put(store.js, "timestamp.json", timestamp_at(trust_home, datetime.now(UTC), signer=stranger))

    signatures = await refused(device, trusted)
    assert signatures.refusal is Refusal.SIGNATURES
    assert "timestamp was signed by 0/1 keys" in str(signatures)


async def test_a_device_without_a_trusted_root_refuses(trust_home: Home, device: Client, tmp_path: Path) -> None:
    missing = await refused(device, tmp_path / "empty")
    assert missing.refusal is Refusal.SIGNATURES
    assert "no trusted root.json" in str(missing)


async def test_an_offline_signed_target_reaches_the_device(store: EventStore, device: Client, tmp_path: Path) -> None:
    await fresh_buckets(store.js)
    home = Home(tmp_path / "offline-home")
    offline = tmp_path / "keys-away"
    await control.initialise(home, offline_dir=offline)
    await control.publish_all(home, store.js, store, actor="control")
    trusted = give_root(home, tmp_path / "trusted")
    await control.stage_target(home, store.js, store, version="2.0.0", actor="ops", **PUMP)
    assert (await refused(device, trusted, "2.0.0")).refusal is Refusal.UNKNOWN_TARGET  # staged, not signed yet

    staged = (home.root / "trust" / "staged" / "targets.json").read_bytes()
    document = control.sign_file(staged, next((offline / "targets").glob("*.key")))
    await control.add_signatures(home, store.js, store, [control.read_signature(document, "x")], actor="ops")
    assert (await verify(device, trusted, "2.0.0")).version == "2.0.0"


async def test_a_mesh_without_the_tuf_bucket_is_unavailable_not_a_refusal(
    trust_home: Home, store: EventStore, device: Client, tmp_path: Path
) -> None:
    trusted = give_root(trust_home, tmp_path / "trusted")
    await store.js.delete_stream(METADATA_STREAM)
    with pytest.raises(MetadataUnavailable, match="the tuf bucket did not answer"):
        await verify(device, trusted)


async def test_a_device_may_read_the_metadata_but_not_write_it(
    trust_home: Home, store: EventStore, device: Client
) -> None:
    before = await bucket_get(store.js, "timestamp.json")
    # Allowed, JetStream would answer each (a publish ack, a purge response); refused, nothing does.
    for subject, payload in (("$KV.tuf.timestamp.json", b"{}"), ("$JS.API.STREAM.PURGE.KV_tuf", b"")):
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await device.request(subject, payload, timeout=2)
    assert await bucket_get(store.js, "timestamp.json") == before
