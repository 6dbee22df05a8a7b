"""The projection runner on a real mesh and real SQLCipher files: encrypted, exactly once, parks, resumes, rebuilds."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlcipher3
from nats.aio.client import Client

from core.events import DeviceEnrolled, DeviceHeartbeat, DeviceRevoked, Event, TelemetryReported
from core.store import EventStore
from projections.database import DatabaseKeyError, database_key, ensure_key_file, open_encrypted
from projections.devices import Devices
from projections.projection import Statement
from projections.runner import ProjectionError, ProjectionRunner

KEY = secrets.token_hex(32)


def device() -> str:
    return f"dev-{uuid.uuid4().hex[:10]}"


def life(dev: str) -> list:  # type: ignore[type-arg]
    when = datetime(2027, 1, 1, tzinfo=UTC)
    return [
        DeviceEnrolled(device_id=dev, serial="aa", fingerprint_sha256="ff", not_after=when),
        DeviceHeartbeat(device_id=dev, uptime_s=5.0, outbox=2, cert_fingerprint_sha256="ff"),
        TelemetryReported(device_id=dev, metrics={"temp_c": 40.0, "load": 0.5}),
        TelemetryReported(device_id=dev, metrics={"temp_c": 41.5}),
    ]


@pytest.fixture
async def runner(store: EventStore, tmp_path: Path) -> AsyncIterator[ProjectionRunner]:
    running = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY, batch=3)
    await running.open()
    yield running
    await running.close()


async def rows(runner: ProjectionRunner, sql: str, *params: object) -> list[tuple[object, ...]]:
    assert runner.db is not None
    return [tuple(r) for r in await runner.db.execute_fetchall(sql, params)]


async def test_events_become_rows_and_the_position_follows_the_stream(
    runner: ProjectionRunner, store: EventStore
) -> None:
    dev = device()
    await store.append_many(life(dev))
    await runner.catch_up()
    assert await runner.position() == await store.last_sequence("EVENTS")
    assert await rows(runner, "SELECT status, serial, uptime_s, outbox FROM devices WHERE device_id = ?", dev) == [
        ("enrolled", "aa", 5.0, 2)
    ]
    assert await rows(runner, "SELECT metric, value FROM telemetry_last WHERE device_id = ? ORDER BY metric", dev) == [
        ("load", 0.5),
        ("temp_c", 41.5),
    ]


async def test_the_file_is_encrypted_and_refuses_another_key(runner: ProjectionRunner, store: EventStore) -> None:
    await store.append(life(device())[0])
    await runner.catch_up()
    await runner.close()
    assert not runner.path.read_bytes().startswith(b"SQLite format 3")
    with pytest.raises(DatabaseKeyError, match="does not match"):
        await open_encrypted(runner.path, secrets.token_hex(32))
    with pytest.raises(sqlcipher3.DatabaseError):
        sqlcipher3.connect(str(runner.path)).execute("SELECT * FROM devices")


def test_a_missing_or_malformed_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(DatabaseKeyError, match=r"db\.key is missing"):
        database_key(tmp_path, {})
    with pytest.raises(DatabaseKeyError, match="64 hexadecimal"):
        database_key(tmp_path, {"MAHAVISHNU_DB_KEY": "short"})
    path = ensure_key_file(tmp_path)
    assert path.stat().st_mode & 0o077 == 0
    assert len(database_key(tmp_path, {})) == 64


async def test_a_malformed_event_is_parked_and_the_projection_goes_on(
    runner: ProjectionRunner, store: EventStore, nc: Client
) -> None:
    dev = device()
    await store.append(life(dev)[0])
    bad = await nc.jetstream().publish(f"mesh.evt.device.{dev}.telemetry", b'{"type": "device.telemetry.v1"}')
    await store.append(DeviceRevoked(device_id=dev, serials=["aa"]))
    await runner.catch_up()
    [parked] = [p for p in await runner.parked() if p.seq == bad.seq]
    assert "device_id" in parked.reason
    assert await rows(runner, "SELECT status FROM devices WHERE device_id = ?", dev) == [("revoked",)]


async def test_it_resumes_from_its_position_after_a_restart(store: EventStore, tmp_path: Path) -> None:
    first = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY)
    await first.open()
    dev = device()
    await store.append(life(dev)[:2])
    await first.catch_up()
    before = await first.position()
    await first.close()

    await store.append(DeviceRevoked(device_id=dev, serials=["aa"]))
    again = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY)
    await again.open()
    try:
        assert again.rebuilt_because == ""
        assert await again.position() == before
        assert await again.catch_up() == 1
        assert await again.position() > before
        assert await rows(again, "SELECT status FROM devices WHERE device_id = ?", dev) == [("revoked",)]
    finally:
        await again.close()


async def test_a_new_schema_version_rebuilds_to_the_same_content(store: EventStore, tmp_path: Path) -> None:
    dev = device()
    await store.append_many(life(dev))
    old = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY)
    await old.open()
    await old.catch_up()
    content = await rows(old, "SELECT * FROM devices ORDER BY device_id")
    await old.close()

    class DevicesNext(Devices):
        version = Devices.version + 1

    new = ProjectionRunner(DevicesNext(), store, directory=tmp_path, key=KEY)
    await new.open()
    try:
        assert f"schema version {Devices.version}" in new.rebuilt_because
        await new.catch_up()
        assert await rows(new, "SELECT * FROM devices ORDER BY device_id") == content
    finally:
        await new.close()


async def test_a_rebuild_swaps_in_a_new_file_while_the_old_one_answers(store: EventStore, tmp_path: Path) -> None:
    dev = device()
    await store.append_many(life(dev))
    live = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY, batch=2)
    await live.open()
    await live.catch_up()
    before = await rows(live, "SELECT * FROM devices ORDER BY device_id")
    answered: list[int] = []

    def progress(position: int, last: int) -> None:
        answered.append(position)  # the live file is untouched while the new one fills

    try:
        applied = await live.rebuild(progress=progress)
        assert answered and answered == sorted(answered) and answered[-1] == applied
        assert await rows(live, "SELECT * FROM devices ORDER BY device_id") == before
        assert not live.path.with_name("devices.db.rebuild").exists()
    finally:
        await live.close()


async def test_a_rebuild_keeps_what_was_parked_and_loads_in_many_batches(
    store: EventStore, nc: Client, tmp_path: Path
) -> None:
    dev = device()
    await store.append_many(life(dev))
    bad = await nc.jetstream().publish(f"mesh.evt.device.{dev}.telemetry", b"not json")
    await store.append(DeviceRevoked(device_id=dev, serials=["aa"]))
    live = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY, bulk_batch=2)
    await live.open()
    try:
        await live.catch_up()
        before = await rows(live, "SELECT * FROM devices ORDER BY device_id")
        parked_before = await live.parked()
        await live.rebuild()
        assert await rows(live, "SELECT * FROM devices ORDER BY device_id") == before
        assert await live.parked() == parked_before
        assert any(p.seq == bad.seq for p in parked_before)
        assert await rows(live, "SELECT position FROM positions") == [(await store.last_sequence("EVENTS"),)]
    finally:
        await live.close()


class BrokenDevices(Devices):
    """A projection with a bug: it fails on telemetry (not a parkable event, a crash)."""

    def apply(self, event: Event, seq: int) -> list[Statement]:
        if isinstance(event, TelemetryReported):
            raise RuntimeError("a bug in apply")
        return super().apply(event, seq)


async def test_a_failed_rebuild_leaves_the_live_file_and_no_debris(store: EventStore, tmp_path: Path) -> None:
    dev = device()
    await store.append(life(dev)[0])
    live = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY)
    await live.open()
    await live.catch_up()
    before = await rows(live, "SELECT * FROM devices ORDER BY device_id")
    await live.close()
    await store.append_many(life(dev)[1:])
    broken = ProjectionRunner(BrokenDevices(), store, directory=tmp_path, key=KEY)
    await broken.open()
    try:
        with pytest.raises(ProjectionError, match="rebuild failed"):
            await broken.rebuild()
        assert await rows(broken, "SELECT * FROM devices ORDER BY device_id") == before
        debris = [f"{broken.path}.rebuild{suffix}" for suffix in ("", "-wal", "-shm")]
        assert not any(map(os.path.exists, debris))
    finally:
        await broken.close()


async def test_the_service_follows_the_stream_and_owns_the_folder(store: EventStore, tmp_path: Path) -> None:
    import asyncio

    from projections.service import FolderLock, ProjectionService, ReadModelsBusy
    from tests.waiting import eventually_async

    service = ProjectionService(store, tmp_path, KEY)
    await service.start()
    stop = asyncio.Event()
    following = asyncio.create_task(service.run(stop))
    try:
        with pytest.raises(ReadModelsBusy, match="stop it first"):
            FolderLock(tmp_path).acquire()
        dev = device()
        await store.append(life(dev)[0])
        [runner] = [r for r in service.runners if r.projection.name == "devices"]

        async def applied() -> bool:
            return bool(await rows(runner, "SELECT 1 FROM devices WHERE device_id = ?", dev))

        await eventually_async(applied, timeout=10, what="the service to apply a new event")
    finally:
        stop.set()
        await following
        await service.close()
    FolderLock(tmp_path).acquire()  # released on close


async def test_after_a_burst_the_service_is_woken_by_a_single_event_again(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst drops the wake-up subscriptions (the service looks again at once); they come back after it."""
    import asyncio

    from projections import service as following_module
    from projections.service import BUSY, ProjectionService

    monkeypatch.setattr(following_module, "SAFETY_INTERVAL_S", 600.0)  # only a wake-up can apply the last event
    service = ProjectionService(store, tmp_path, KEY, ("devices",))
    await service.start()
    stop = asyncio.Event()
    following = asyncio.create_task(service.run(stop))
    try:
        dev = device()
        burst = await store.append_many(
            TelemetryReported(device_id=dev, metrics={"n": float(i)}) for i in range(3 * BUSY)
        )
        await service.wait("devices", {"mesh.evt.device.>": burst.last_seq}, timeout=30)
        await asyncio.wait_for(service.listening.wait(), 30)  # caught up, waiting to be woken
        [last] = await store.append(TelemetryReported(device_id=dev, metrics={"n": -1.0}))
        await service.wait("devices", {"mesh.evt.device.>": last.seq}, timeout=30)
    finally:
        stop.set()
        await following
        await service.close()


async def test_a_model_whose_wake_up_came_too_early_is_caught_up_while_others_keep_waking_the_service(
    store: EventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wake-up heard before its event was stored is spent for nothing: the full round still applies the event.

    It comes every SAFETY_INTERVAL_S even while another model's events keep waking the service (a
    dashboard's queries grow the audit model several times a second).
    """
    import asyncio

    from core.audit import AuditTrail
    from projections import service as following_module
    from projections.service import ProjectionService

    monkeypatch.setattr(following_module, "SAFETY_INTERVAL_S", 0.5)
    service = ProjectionService(store, tmp_path, KEY, ("devices", "audit"))
    await service.start()
    original = service._round
    spent: list[set[str]] = []

    async def too_early(woken: set[str] | None = None) -> int:  # the devices model's wake-up reads too soon
        if woken is not None and "mesh.evt.device.>" in woken and not spent:
            spent.append(woken)
            woken = woken - {"mesh.evt.device.>"}
        return await original(woken)

    monkeypatch.setattr(service, "_round", too_early)
    stop = asyncio.Event()
    following = asyncio.create_task(service.run(stop))
    trail = AuditTrail(store)

    async def keep_waking() -> None:
        while not stop.is_set():
            await trail.record(actor="dashboard", category="query", action="audit.search")

    waking = asyncio.create_task(keep_waking())
    try:
        await asyncio.wait_for(service.listening.wait(), 30)
        [event] = await store.append(TelemetryReported(device_id=device(), metrics={"n": 1.0}))
        await service.wait("devices", {"mesh.evt.device.>": event.seq}, timeout=30)
        assert spent  # the devices model's wake-up was indeed spent without it
    finally:
        stop.set()
        await waking
        await following
        await service.close()


async def test_events_lost_before_being_applied_force_a_rebuild(tmp_path: Path) -> None:
    from core.store import connect
    from tests.harness import start_mesh

    own = start_mesh(tmp_path / "mesh")
    try:
        nc = await connect(own.identity, name="t", reconnect=False)
        store = EventStore(nc)
        await store.ensure_streams()
        dev = device()
        await store.append(life(dev)[0])
        runner = ProjectionRunner(Devices(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
        await store.append_many(life(dev)[1:] * 3)
        last = await store.last_sequence("EVENTS")
        await nc.request("$JS.API.STREAM.PURGE.EVENTS", f'{{"seq": {last}}}'.encode())  # keep only the last
        await runner.open()
        assert "aged out" in runner.rebuilt_because
        await runner.close()
        await nc.close()
    finally:
        own.stop()


def test_the_shadow_delta_lists_what_the_device_has_not_reported() -> None:
    from projections.devices import delta

    assert delta({"rate": 5, "mode": "eco"}, {"rate": 5, "mode": "max"}) == {"mode": "eco"}
    assert delta({"rate": 5}, {}) == {"rate": 5}
    assert delta({"flag": None}, {}) == {"flag": None}  # reporting nothing is not reporting null
    assert delta({}, {"extra": 1}) == {}
