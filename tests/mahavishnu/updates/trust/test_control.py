"""The control side of the trust on a real server: init, publish, targets signed online and offline, refresh."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from tuf.api.metadata import Metadata

from core import subjects
from core.events import AuditRecorded, TrustMetadataPublished
from core.store import EventStore
from core.updates.naming import METADATA_STREAM
from mahavishnu.control import backup
from mahavishnu.runtime.home import Home
from mahavishnu.updates.trust import control, refresher
from mahavishnu.updates.trust.policy import KeyPlan, RoleKeys, TrustError
from tests.mahavishnu.updates.trust.harness import bucket_get, fresh_buckets
from tests.waiting import eventually_async

ARTIFACT = {"name": "pump-fw", "version": "1.2.0", "length": 5, "sha256": "ab" * 32, "device_type": "pump"}


@pytest.fixture
async def trust_home(tmp_path: Path, store: EventStore) -> AsyncIterator[Home]:
    await fresh_buckets(store.js)
    yield Home(tmp_path / "home")


async def published(store: EventStore) -> list[TrustMetadataPublished]:
    events = []
    async for stored in store.read(f"{subjects.EVENTS_PREFIX}.trust.>"):
        if isinstance(stored.event, TrustMetadataPublished):
            events.append(stored.event)
    return events


async def test_init_makes_every_role_and_publishes_it_once(trust_home: Home, store: EventStore) -> None:
    before = len(await published(store))
    root = await control.initialise(trust_home)
    first = await control.publish_all(trust_home, store.js, store, actor="control")
    again = await control.publish_all(trust_home, store.js, store, actor="control")

    assert [(e.role, e.version) for e in first.published] == [
        ("root", 1),
        ("targets", 1),
        ("snapshot", 1),
        ("timestamp", 1),
    ]
    assert again.published == ()
    assert len(await published(store)) == before + 4
    assert first.published[0].signers == tuple(root.signed.roles["root"].keyids)
    for name in ("1.root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"):
        assert Metadata.from_bytes(await bucket_get(store.js, name)).signed.version == 1
    private = sorted((trust_home.root / "trust" / "keys").rglob("*.key"))
    assert len(private) == 4
    assert {stat.S_IMODE(path.stat().st_mode) for path in private} == {0o600}
    with pytest.raises(TrustError, match="initialised already"):
        await control.initialise(trust_home)
    # A backup carries the signed files, and the online keys only when asked for them (--include-keys).
    carried = {str(path) for path in backup.home_files(trust_home.root, include_keys=False)}
    assert "trust/repository/1.root.json" in carried
    assert not any(path.startswith("trust/keys") for path in carried)
    assert (
        len([p for p in backup.home_files(trust_home.root, include_keys=True) if p.parts[:2] == ("trust", "keys")]) == 4
    )


async def test_an_online_target_is_signed_and_published_with_a_new_snapshot_and_timestamp(
    trust_home: Home, store: EventStore
) -> None:
    await control.initialise(trust_home)
    outcome = await control.stage_target(trust_home, store.js, store, depends=("base@1.0",), actor="ops", **ARTIFACT)

    assert outcome.waiting is None
    assert {(e.role, e.version) for e in outcome.published} >= {("targets", 2), ("snapshot", 2), ("timestamp", 2)}
    assert all(e.actor == "ops" for e in outcome.published)
    targets = Metadata.from_bytes(await bucket_get(store.js, "2.targets.json"))
    target = targets.signed.targets["pump-fw/1.2.0"]
    assert (target.length, target.hashes) == (5, {"sha256": "ab" * 32})
    assert target.custom == {"name": "pump-fw", "version": "1.2.0", "device_type": "pump", "depends": ["base@1.0"]}
    snapshot = Metadata.from_bytes(await bucket_get(store.js, "2.snapshot.json"))
    assert snapshot.signed.meta["targets.json"].version == 2

    same = await control.stage_target(trust_home, store.js, store, depends=("base@1.0",), actor="ops", **ARTIFACT)
    assert same.published == ()
    withdrawn = await control.withdraw_target(trust_home, store.js, store, name="pump-fw", version="1.2.0", actor="ops")
    assert ("targets", 3) in {(e.role, e.version) for e in withdrawn.published}
    assert Metadata.from_bytes(await bucket_get(store.js, "3.targets.json")).signed.targets == {}


async def test_offline_targets_keys_stage_until_their_threshold_signs(
    trust_home: Home, store: EventStore, tmp_path: Path
) -> None:
    offline = tmp_path / "usb-stick"
    await control.initialise(trust_home, KeyPlan(targets=RoleKeys(threshold=2, count=3)), offline_dir=offline)
    await control.publish_all(trust_home, store.js, store, actor="control")
    assert not (trust_home.root / "trust" / "keys" / "targets").exists()  # only snapshot's and timestamp's stay
    assert not (trust_home.root / "trust" / "keys" / "root").exists()

    staged = await control.stage_target(trust_home, store.js, store, actor="ops", **ARTIFACT)
    assert staged.waiting == control.Waiting(version=2, signed=0, threshold=2)
    assert staged.published == ()
    assert "pump-fw/1.2.0" not in Metadata.from_bytes(await bucket_get(store.js, "1.targets.json")).signed.targets

    # Where the keys are: sign a copy of the staged file, carry the signature back.
    staged_file = trust_home.root / "trust" / "staged" / "targets.json"
    carried = tmp_path / "carried.json"
    carried.write_bytes(staged_file.read_bytes())
    first, second, _ = sorted((offline / "targets").glob("*.key"))
    signature = tmp_path / "sig-1.json"
    signature.write_text(json.dumps(control.sign_file(carried.read_bytes(), first)))
    one = await control.add_signatures(
        trust_home, store.js, store, [control.signature_document(signature)], actor="ops"
    )
    assert one.waiting == control.Waiting(version=2, signed=1, threshold=2)
    assert one.published == ()

    stranger = tmp_path / "stranger"
    await control.initialise(Home(stranger))
    foreign = control.sign_file(carried.read_bytes(), next((stranger / "trust" / "keys" / "targets").glob("*.key")))
    with pytest.raises(TrustError, match="is not one of the targets keys"):
        await control.add_signatures(trust_home, store.js, store, [control.read_signature(foreign, "x")], actor="ops")
    root_key = next((offline / "root").glob("*.key"))
    with pytest.raises(TrustError, match="not one of the targets keys"):
        await control.add_signatures(
            trust_home,
            store.js,
            store,
            [control.read_signature(control.sign_file(carried.read_bytes(), root_key), "x")],
            actor="ops",
        )

    done = await control.add_signatures(
        trust_home,
        store.js,
        store,
        [control.read_signature(control.sign_file(carried.read_bytes(), second), "x")],
        actor="ops",
    )
    assert done.waiting is None
    published_targets = [e for e in done.published if e.role == "targets"]
    assert [e.version for e in published_targets] == [2]
    assert len(published_targets[0].signers) == 2
    assert not staged_file.exists()
    assert "pump-fw/1.2.0" in Metadata.from_bytes(await bucket_get(store.js, "2.targets.json")).signed.targets
    with pytest.raises(TrustError, match="nothing to sign"):
        await control.add_signatures(trust_home, store.js, store, [], actor="ops")
    # Each signature given is in the audit trail, the refused ones too (key ids, never keys).
    records = [s.event async for s in store.read(subjects.audit("updates", "ops"))]
    signing = [(r.action, r.outcome, r.details.get("signed")) for r in records if isinstance(r, AuditRecorded)]
    assert signing[-4:] == [
        ("trust.sign", "ok", 1),
        ("trust.sign", "denied", None),
        ("trust.sign", "denied", None),
        ("trust.sign", "ok", 2),
    ]
    assert "PRIVATE" not in json.dumps([r.details for r in records if isinstance(r, AuditRecorded)])


async def test_a_signature_over_an_older_staged_file_is_refused(
    trust_home: Home, store: EventStore, tmp_path: Path
) -> None:
    offline = tmp_path / "offline"
    await control.initialise(trust_home, offline_dir=offline)
    await control.stage_target(trust_home, store.js, store, actor="ops", **ARTIFACT)
    older = (trust_home.root / "trust" / "staged" / "targets.json").read_bytes()
    await control.stage_target(trust_home, store.js, store, actor="ops", **(ARTIFACT | {"version": "1.3.0"}))
    key = next((offline / "targets").glob("*.key"))
    with pytest.raises(TrustError, match="made over another file"):
        await control.add_signatures(
            trust_home, store.js, store, [control.read_signature(control.sign_file(older, key), "x")], actor="ops"
        )


async def test_refresh_re_signs_timestamp_and_snapshot_before_they_expire(trust_home: Home, store: EventStore) -> None:
    start = datetime.now(UTC)
    await control.initialise(trust_home, now=start)
    quiet = await control.refresh(trust_home, store.js, store, now=start + timedelta(hours=1))
    assert {(e.role, e.version) for e in quiet.published} == {
        ("root", 1),
        ("targets", 1),
        ("snapshot", 1),
        ("timestamp", 1),
    }

    later = await control.refresh(trust_home, store.js, store, now=start + timedelta(hours=13))
    assert [(e.role, e.version) for e in later.published] == [("timestamp", 2)]
    days = await control.refresh(trust_home, store.js, store, now=start + timedelta(days=4))
    assert [(e.role, e.version) for e in days.published] == [("snapshot", 2), ("timestamp", 3)]
    assert (await control.refresh(trust_home, store.js, store, now=start + timedelta(days=4))).published == ()


async def test_an_offline_targets_file_due_for_renewal_does_not_stop_the_timestamp(
    trust_home: Home, store: EventStore, tmp_path: Path
) -> None:
    start = datetime.now(UTC)
    await control.initialise(trust_home, offline_dir=tmp_path / "offline", now=start)
    await control.publish_all(trust_home, store.js, store, actor="control")

    later = await control.refresh(trust_home, store.js, store, now=start + timedelta(days=200))
    assert [(e.role, e.version) for e in later.published] == [("snapshot", 2), ("timestamp", 2)]
    online = await control.refresh(trust_home, store.js, store, now=start + timedelta(days=200, hours=13))
    assert [(e.role, e.version) for e in online.published] == [("timestamp", 3)]


async def test_an_online_targets_file_is_renewed_with_its_snapshot_and_timestamp(
    trust_home: Home, store: EventStore
) -> None:
    start = datetime.now(UTC)
    await control.initialise(trust_home, now=start)
    await control.publish_all(trust_home, store.js, store, actor="control")

    renewed = await control.refresh(trust_home, store.js, store, now=start + timedelta(days=200))
    assert [(e.role, e.version) for e in renewed.published] == [("targets", 2), ("snapshot", 2), ("timestamp", 2)]


async def test_a_bucket_holding_another_meshs_files_is_not_overwritten(
    trust_home: Home, store: EventStore, tmp_path: Path
) -> None:
    await control.initialise(trust_home)
    await control.publish_all(trust_home, store.js, store, actor="control")
    other = Home(tmp_path / "other")
    await control.initialise(other)
    with pytest.raises(TrustError, match=r"another 1\.root\.json"):
        await control.publish_all(other, store.js, store, actor="control")


async def test_stage_target_before_init_says_what_to_do(trust_home: Home, store: EventStore, nc: Client) -> None:
    with pytest.raises(TrustError, match="artifact trust init"):
        await control.stage_target(trust_home, store.js, store, actor="ops", **ARTIFACT)


async def test_the_refresher_re_signs_a_timestamp_due_and_stops_when_told(trust_home: Home, store: EventStore) -> None:
    await control.initialise(trust_home, now=datetime.now(UTC) - timedelta(hours=20))  # the timestamp: 4 h left
    stop = asyncio.Event()
    running = asyncio.create_task(refresher.keep_fresh(trust_home, store, stop))

    async def timestamp_version() -> int:
        return int(Metadata.from_bytes(await bucket_get(store.js, "timestamp.json")).signed.version)

    async def re_signed() -> bool:
        with contextlib.suppress(KeyNotFoundError):
            return await timestamp_version() == 2
        return False

    await eventually_async(re_signed, timeout=20, what="timestamp v2 in the bucket")
    stop.set()
    await asyncio.wait_for(running, 10)


async def test_publishing_without_the_bucket_says_what_makes_it(trust_home: Home, store: EventStore) -> None:
    await control.initialise(trust_home)
    await store.js.delete_stream(METADATA_STREAM)
    with pytest.raises(TrustError, match="no tuf bucket: `mahavishnu up` makes it"):
        await control.publish_all(trust_home, store.js, store, actor="control")
    await refresher.refresh_once(trust_home, store)  # logged, not raised: up goes on
