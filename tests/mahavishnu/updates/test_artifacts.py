"""The artifact store against a real mesh: the bytes in the object store, the events, the audit, the refusals."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from core.events import ArtifactAdded, ArtifactRemoved, AuditRecorded
from core.store import EventStore
from core.updates.naming import ARTIFACTS_BUCKET
from core.updates.objects import CHUNK_SIZE
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.updates import artifacts, objects
from mahavishnu.updates.artifacts import ArtifactRefused


@pytest.fixture
async def buckets(store: EventStore) -> EventStore:
    await ensure_update_buckets(store.js, replicas=1)
    return store


def a_file(folder: Path, size: int, name: str = "app.tar") -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def a_name() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def recorded(store: EventStore, name: str) -> list[ArtifactAdded | ArtifactRemoved]:
    return [
        stored.event
        async for stored in store.read(f"mesh.evt.artifact.{name}.>")
        if isinstance(stored.event, ArtifactAdded | ArtifactRemoved)
    ]


async def audited(store: EventStore, name: str) -> list[AuditRecorded]:
    return [
        stored.event
        async for stored in store.read("mesh.audit.artifact.>")
        if isinstance(stored.event, AuditRecorded) and stored.event.target.startswith(f"{name}@")
    ]


async def test_add_stores_the_bytes_records_length_and_digest_and_audits(buckets: EventStore, tmp_path: Path) -> None:
    store, name = buckets, a_name()
    path = a_file(tmp_path, 3 * CHUNK_SIZE + 17)  # chunks, and a short last one
    seen: list[tuple[int, int]] = []

    added = await artifacts.add(
        store,
        path,
        name=name,
        version="1.0.0",
        device_type="rpi4",
        depends=["base@2"],
        actor="olga",
        progress=lambda done, total: seen.append((done, total)),
    )

    data = path.read_bytes()
    assert (added.length, added.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert (added.device_type, added.depends, added.filename, added.added_by) == (
        "rpi4",
        ("base@2",),
        "app.tar",
        "olga",
    )
    assert seen[-1] == (len(data), len(data))
    # The object store's own layout: nats-py's stock reader reads it and checks its digest.
    stock = await (await store.js.object_store(ARTIFACTS_BUCKET)).get(f"{name}/1.0.0")
    assert stock.data == data and stock.info.chunks == 4
    [event] = await recorded(store, name)
    assert isinstance(event, ArtifactAdded) and event.actor == "olga" and event.sha256 == added.sha256
    [record] = await audited(store, name)
    assert (record.actor, record.action, record.target) == ("olga", "artifact.add", f"{name}@1.0.0")
    assert (await artifacts.artifacts(store))[f"{name}/1.0.0"] == added
    shown = await artifacts.show(store, f"{name}@1.0.0")
    assert shown.stored is not None and (shown.stored.size, shown.stored.sha256) == (len(data), added.sha256)


async def test_remove_deletes_the_bytes_records_and_audits_and_the_version_can_be_added_again(
    buckets: EventStore, tmp_path: Path
) -> None:
    store, name = buckets, a_name()
    await artifacts.add(store, a_file(tmp_path, 1000), name=name, version="1", device_type="rpi4", actor="olga")

    await artifacts.remove(store, f"{name}@1", actor="ivan", reason="bad build")

    assert f"{name}/1" not in await artifacts.artifacts(store)
    found = await objects.info(store.nc, f"{name}/1")
    assert found is not None and found.info.deleted
    removed = (await recorded(store, name))[-1]
    assert isinstance(removed, ArtifactRemoved) and (removed.actor, removed.reason) == ("ivan", "bad build")
    assert [(r.actor, r.action) for r in await audited(store, name)] == [
        ("olga", "artifact.add"),
        ("ivan", "artifact.remove"),
    ]
    again = await artifacts.add(store, a_file(tmp_path, 2000), name=name, version="1", device_type="rpi4", actor="olga")
    assert again.length == 2000


async def test_a_name_at_version_that_exists_is_refused_and_its_bytes_stay(buckets: EventStore, tmp_path: Path) -> None:
    store, name = buckets, a_name()
    first = await artifacts.add(
        store, a_file(tmp_path, 1000, "a"), name=name, version="2.0", device_type="x", actor="o"
    )

    with pytest.raises(ArtifactRefused, match=rf"artifact {name}@2.0 exists .*another --version"):
        await artifacts.add(store, a_file(tmp_path, 500, "b"), name=name, version="2.0", device_type="x", actor="o")

    assert len(await recorded(store, name)) == 1
    assert (await artifacts.show(store, f"{name}@2.0")).stored.sha256 == first.sha256  # type: ignore[union-attr]


async def test_bytes_stored_meanwhile_under_the_same_name_are_not_replaced(buckets: EventStore, tmp_path: Path) -> None:
    store, name = buckets, a_name()
    other = await objects.put_file(store.nc, f"{name}/1", a_file(tmp_path, 700, "theirs"))

    with pytest.raises(ArtifactRefused, match="already"):
        await artifacts.add(store, a_file(tmp_path, 900, "mine"), name=name, version="1", device_type="x", actor="o")

    found = await objects.info(store.nc, f"{name}/1")
    assert found is not None and found.info.sha256 == other.sha256
    # ...and `remove` clears such bytes that no event names.
    await artifacts.remove(store, f"{name}@1", actor="o")
    found = await objects.info(store.nc, f"{name}/1")
    assert found is not None and found.info.deleted


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"name": "App"}, "artifact name 'App'"),
        ({"version": "1 0"}, "artifact version '1 0'"),
        ({"device_type": "Pi 4"}, "device type 'Pi 4'"),
        ({"depends": ["base@"]}, "artifact version ''"),
        ({"depends": ["Base"]}, "artifact name 'Base'"),
    ],
)
async def test_bad_names_are_refused_in_one_line_before_any_upload(
    buckets: EventStore, tmp_path: Path, fields: dict[str, object], said: str
) -> None:
    arguments: dict[str, object] = {"name": a_name(), "version": "1", "device_type": "rpi4", **fields}
    with pytest.raises(ArtifactRefused) as refused:
        await artifacts.add(buckets, a_file(tmp_path, 10), actor="o", **arguments)  # type: ignore[arg-type]
    assert said in str(refused.value) and "\n" not in str(refused.value)


async def test_an_empty_missing_unreadable_or_odd_file_is_refused(buckets: EventStore, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    cases = {empty: "is empty", tmp_path / "nowhere": "no file", tmp_path: "not a regular file"}
    for path, said in cases.items():
        with pytest.raises(ArtifactRefused, match=said):
            await artifacts.add(buckets, path, name=a_name(), version="1", device_type="x", actor="o")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ArtifactRefused, match="not a regular file"):
        await artifacts.add(buckets, fifo, name=a_name(), version="1", device_type="x", actor="o")


async def test_show_and_remove_of_what_is_not_there_are_refused(buckets: EventStore) -> None:
    name = a_name()
    with pytest.raises(ArtifactRefused, match=f"no artifact {name}@9: see `mahavishnu artifact list`"):
        await artifacts.show(buckets, f"{name}@9")
    with pytest.raises(ArtifactRefused, match=f"no artifact {name}@9"):
        await artifacts.remove(buckets, f"{name}@9", actor="o")
    with pytest.raises(ArtifactRefused, match="NAME@VERSION"):
        await artifacts.show(buckets, name)
    assert await recorded(buckets, name) == []
