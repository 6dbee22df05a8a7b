"""The device's downloader against a real mesh, as a real device: its own certificate, admitted by the auth
callout with only a device's permissions; real files, a real TCP link to cut."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client

from core import subjects
from core.store import EventStore, Identity, connect
from core.updates import objects as layout
from core.updates.naming import ARTIFACTS_BUCKET, ARTIFACTS_STREAM, METADATA_BUCKET, download_consumer
from edge.updates import download as downloading
from edge.updates.download import DownloadFailed, download
from edge.updates.errors import Refusal, UpdateRefused
from mahavishnu.control import devices
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.updates import objects
from tests.harness import Mesh, free_port, start_mesh
from tests.proxy import Proxy
from tests.waiting import eventually

MIB = 1024 * 1024


@dataclass
class Device:
    device_id: str
    identity: Identity
    errors: list[str] = field(default_factory=list)

    async def connect(self, url: str | None = None) -> Client:
        async def collect(error: Exception) -> None:
            self.errors.append(str(error))

        identity = (
            self.identity if url is None else Identity(url, self.identity.ca, self.identity.cert, self.identity.key)
        )
        return await connect(
            identity,
            name=self.device_id,
            inbox_prefix=subjects.device_inbox_prefix(self.device_id),
            error_cb=collect,
        )


@dataclass
class Artifact:
    target: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@pytest.fixture
async def buckets(store: EventStore) -> EventStore:
    await ensure_update_buckets(store.js, replicas=1)
    return store


async def enrolled(mesh: Mesh, store: EventStore, folder: Path) -> Device:
    device_id = f"dev-{uuid.uuid4().hex[:8]}"
    await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=folder / device_id)
    files = folder / device_id
    return Device(device_id, Identity(mesh.identity.url, files / "ca.pem", files / "cert.pem", files / "key.pem"))


@pytest.fixture
async def device(mesh: Mesh, buckets: EventStore, tmp_path: Path) -> Device:
    return await enrolled(mesh, buckets, tmp_path)


@pytest.fixture
async def device_nc(device: Device) -> AsyncIterator[Client]:
    nc = await device.connect()
    yield nc
    await nc.close()


async def stored(store: EventStore, folder: Path, size: int) -> Artifact:
    data = os.urandom(size)
    source = folder / f"source-{uuid.uuid4().hex[:6]}"
    source.write_bytes(data)
    target = f"app-{uuid.uuid4().hex[:8]}/1.0"
    await objects.put_file(store.nc, target, source)
    return Artifact(target, data)


def leftovers(dest: Path) -> list[str]:
    return sorted(path.name for path in dest.parent.iterdir() if path.name.startswith(dest.name))


def download_of(nc: Client, device: Device, artifact: Artifact, dest: Path, **changed: Any) -> Awaitable[Path]:
    """`download` of `artifact` by `device` into `dest`, as the agent calls it; `changed` replaces an argument."""
    arguments: dict[str, Any] = {
        "device_id": device.device_id,
        "target": artifact.target,
        "dest": dest,
        "length": len(artifact.data),
        "sha256": artifact.sha256,
    }
    return download(nc, **(arguments | changed))


async def test_a_download_is_the_objects_bytes_and_leaves_nothing_beside_them(
    buckets: EventStore, device: Device, device_nc: Client, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 5 * layout.CHUNK_SIZE + 1234)
    dest = tmp_path / "out" / "app.bin"
    seen: list[tuple[int, int]] = []

    got = await download_of(device_nc, device, artifact, dest, progress=lambda done, total: seen.append((done, total)))

    assert got == dest and dest.read_bytes() == artifact.data
    assert leftovers(dest) == ["app.bin"]
    assert seen[0] == (0, len(artifact.data)) and seen[-1] == (len(artifact.data), len(artifact.data))
    assert device.errors == []  # nothing it did needed a permission it lacks


async def test_a_wrong_digest_is_refused_as_hash_and_leaves_no_file(
    buckets: EventStore, device: Device, device_nc: Client, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 3 * layout.CHUNK_SIZE)
    dest = tmp_path / "app.bin"

    with pytest.raises(UpdateRefused) as refused:
        await download_of(device_nc, device, artifact, dest, sha256=hashlib.sha256(b"another").hexdigest())

    assert refused.value.refusal is Refusal.HASH and str(refused.value).startswith("update refused (hash)")
    assert leftovers(dest) == []


async def test_a_wrong_length_is_refused_before_any_chunk_is_read(
    buckets: EventStore, device: Device, device_nc: Client, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 1000)
    dest = tmp_path / "app.bin"

    with pytest.raises(UpdateRefused, match="1000 bytes in the bucket, the signed length is 999") as refused:
        await download_of(device_nc, device, artifact, dest, length=999)

    assert refused.value.refusal is Refusal.LENGTH and leftovers(dest) == []


async def test_a_truncated_object_is_refused_as_length_and_leaves_no_file(
    buckets: EventStore, device: Device, device_nc: Client, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 4 * layout.CHUNK_SIZE)
    found = await objects.info(buckets.nc, artifact.target)
    assert found is not None
    last = await buckets.js.get_last_msg(ARTIFACTS_STREAM, layout.chunk_subject(ARTIFACTS_BUCKET, found.info.nuid))
    await buckets.js.delete_msg(ARTIFACTS_STREAM, last.seq)  # the bucket lost the object's last chunk
    dest = tmp_path / "app.bin"

    with pytest.raises(UpdateRefused, match="truncated: 3 of its 4 chunks") as refused:
        await download_of(device_nc, device, artifact, dest)

    assert refused.value.refusal is Refusal.LENGTH and leftovers(dest) == []


async def test_bytes_past_the_signed_length_are_refused_as_they_come(
    buckets: EventStore, device: Device, device_nc: Client, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 12 * MIB)
    found = await objects.info(buckets.nc, artifact.target)
    assert found is not None
    # Its info rewritten to claim 9 MiB (a checkpoint is saved at 8 MiB, before the refusal).
    lying = msgspec.structs.replace(found.info, size=9 * MIB)
    await buckets.js.publish(
        layout.meta_subject(ARTIFACTS_BUCKET, artifact.target), layout.encode_info(lying), headers=dict([layout.ROLLUP])
    )
    dest = tmp_path / "app.bin"

    with pytest.raises(UpdateRefused, match="more bytes arrived than its signed length") as refused:
        await download_of(device_nc, device, artifact, dest, length=9 * MIB)

    assert refused.value.refusal is Refusal.LENGTH and leftovers(dest) == []


async def test_an_object_not_in_the_bucket_fails_without_a_refusal(
    device: Device, device_nc: Client, tmp_path: Path
) -> None:
    with pytest.raises(DownloadFailed, match="is not in the artifacts bucket"):
        await download(
            device_nc, device_id=device.device_id, target="nothing/1", dest=tmp_path / "x", length=1, sha256="00"
        )


async def test_a_cut_link_resumes_from_the_last_chunk_and_the_file_is_the_same(
    buckets: EventStore, device: Device, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 16 * MIB)
    proxy = Proxy(free_port(), int(device.identity.url.rsplit(":", 1)[1]))
    await proxy.start()
    nc = await device.connect(f"tls://127.0.0.1:{proxy.port}")
    seen: list[int] = []
    cuts: list[asyncio.Task[None]] = []

    async def cut_and_restore() -> None:
        await proxy.cut()
        await proxy.restore()

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done >= 4 * MIB and not cuts:  # a quarter in: the link goes, and comes back
            cuts.append(asyncio.get_running_loop().create_task(cut_and_restore()))

    dest = tmp_path / "app.bin"
    try:
        await download_of(nc, device, artifact, dest, progress=progress)
        reconnects = nc.stats["reconnects"]  # the download ended on a connection made after the cut
    finally:
        await nc.close()
        await proxy.close()

    assert dest.read_bytes() == artifact.data
    assert reconnects >= 1 and proxy.connections >= 2  # it did reconnect...
    assert seen == sorted(seen)  # ...and went on from where it was, never from the start again
    assert leftovers(dest) == ["app.bin"]


async def test_a_download_resumes_across_a_restart_of_the_server(tmp_path: Path) -> None:
    own = start_mesh(tmp_path / "mesh", port=free_port())  # a fixed port: the device finds it again
    control = await connect(own.identity, name="control", reconnect=True)
    restarts: list[int] = []
    try:
        store = EventStore(control)
        await store.ensure_streams()
        await ensure_update_buckets(store.js, replicas=1)
        device = await enrolled(own, store, tmp_path)
        artifact = await stored(store, tmp_path, 16 * MIB)
        nc = await device.connect()

        def progress(done: int, total: int) -> None:
            if done >= 4 * MIB and not restarts:  # between two chunks, the server goes and comes back
                restarts.append(done)
                own.server.stop()
                own.server.start()

        dest = tmp_path / "app.bin"
        try:
            await download_of(nc, device, artifact, dest, progress=progress)
            reconnects = nc.stats["reconnects"]
        finally:
            await nc.close()
        assert reconnects >= 1 and dest.read_bytes() == artifact.data and leftovers(dest) == ["app.bin"]
    finally:
        await control.close()
        own.stop()


class Killed(Exception):
    """Stands for the agent's process dying mid-download."""


async def test_a_download_cut_by_a_restart_resumes_from_its_checkpoint(
    buckets: EventStore, device: Device, device_nc: Client, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 12 * MIB)
    dest = tmp_path / "app.bin"

    def dies_after_checkpoint(done: int, total: int) -> None:
        if done >= downloading.CHECKPOINT_BYTES:
            raise Killed

    with pytest.raises(Killed):
        await download_of(device_nc, device, artifact, dest, progress=dies_after_checkpoint)
    checkpoint = json.loads(dest.with_name("app.bin.part.json").read_bytes())
    assert checkpoint["written"] >= downloading.CHECKPOINT_BYTES
    # The next attempt (a new connection, as after a restart) starts where the checkpoint says.
    again = await device.connect()
    starts: list[int] = []
    try:
        await download_of(again, device, artifact, dest, progress=lambda done, total: starts.append(done))
    finally:
        await again.close()

    assert starts[0] == checkpoint["written"]
    assert dest.read_bytes() == artifact.data and leftovers(dest) == ["app.bin"]


# A device's agent downloading in a process of its own, which kills itself (SIGKILL: no
# cleanup, a checkpoint maybe half-way) once `kill_at` bytes are written.
KILLED_AGENT = """
import asyncio, json, os, signal, sys
from pathlib import Path
from core import subjects
from core.store import Identity, connect
from edge.updates.download import download

spec = json.loads(sys.argv[1])

def progress(done, total):
    if done >= spec["kill_at"]:
        os.kill(os.getpid(), signal.SIGKILL)

async def main():
    folder = Path(spec["folder"])
    identity = Identity(spec["url"], folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    nc = await connect(identity, name=spec["device"], inbox_prefix=subjects.device_inbox_prefix(spec["device"]))
    await download(nc, device_id=spec["device"], target=spec["target"], dest=Path(spec["dest"]),
                   length=spec["length"], sha256=spec["sha256"], progress=progress)

asyncio.run(main())
"""


async def test_a_download_killed_with_its_process_resumes_from_what_its_checkpoint_says(
    buckets: EventStore, device: Device, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 12 * MIB)
    dest = tmp_path / "app.bin"
    spec = {
        "folder": str(device.identity.cert.parent),
        "url": device.identity.url,
        "device": device.device_id,
        "target": artifact.target,
        "dest": str(dest),
        "length": len(artifact.data),
        "sha256": artifact.sha256,
        "kill_at": 10 * MIB,
    }
    agent = await asyncio.create_subprocess_exec(sys.executable, "-c", KILLED_AGENT, json.dumps(spec))
    assert await asyncio.wait_for(agent.wait(), 60) == -signal.SIGKILL
    checkpoint = json.loads(dest.with_name("app.bin.part.json").read_bytes())
    assert dest.with_name("app.bin.part").stat().st_size > checkpoint["written"]  # bytes past it: cut back
    # The restarted agent: a new process, a new connection.
    nc = await device.connect()
    starts: list[int] = []
    try:
        await download_of(nc, device, artifact, dest, progress=lambda done, total: starts.append(done))
    finally:
        await nc.close()

    assert starts[0] == checkpoint["written"]
    assert dest.read_bytes() == artifact.data and leftovers(dest) == ["app.bin"]


async def test_a_stale_checkpoint_for_other_bytes_is_not_resumed(
    buckets: EventStore, device: Device, device_nc: Client, tmp_path: Path
) -> None:
    artifact = await stored(buckets, tmp_path, 2 * layout.CHUNK_SIZE)
    dest = tmp_path / "app.bin"
    dest.with_name("app.bin.part").write_bytes(b"x" * layout.CHUNK_SIZE)
    stale = {"target": artifact.target, "nuid": "gone", "length": len(artifact.data), "sha256": artifact.sha256}
    dest.with_name("app.bin.part.json").write_text(json.dumps({**stale, "written": layout.CHUNK_SIZE, "chunks": 1}))
    starts: list[int] = []

    await download_of(device_nc, device, artifact, dest, progress=lambda done, total: starts.append(done))

    assert starts[0] == 0 and dest.read_bytes() == artifact.data


async def violation(device: Device, subject: str) -> str:
    return await eventually(
        # nats-py lower-cases the server's -ERR line, the subject in it too
        lambda: next(
            (e for e in device.errors if f'permissions violation for publish to "{subject.lower()}"' in e), None
        ),
        timeout=10,
        what=f"the server's permissions violation for {subject}",
    )


async def test_a_device_reads_through_no_other_devices_consumer_and_writes_no_bucket(
    mesh: Mesh, buckets: EventStore, device: Device, device_nc: Client, tmp_path: Path
) -> None:
    other = await enrolled(mesh, buckets, tmp_path)
    artifact = await stored(buckets, tmp_path, layout.CHUNK_SIZE)
    found = await objects.info(buckets.nc, artifact.target)
    assert found is not None
    chunks = layout.chunk_subject(ARTIFACTS_BUCKET, found.info.nuid)
    theirs = download_consumer(other.device_id)
    create = f"$JS.API.CONSUMER.CREATE.{ARTIFACTS_STREAM}.{theirs}.{chunks}"
    pull = f"$JS.API.CONSUMER.MSG.NEXT.{ARTIFACTS_STREAM}.{theirs}"
    before = (await buckets.js.stream_info(ARTIFACTS_STREAM)).state.messages

    attempts: list[tuple[str, bytes]] = [
        (
            create,
            json.dumps(
                {"stream_name": ARTIFACTS_STREAM, "config": {"name": theirs, "filter_subject": chunks}}
            ).encode(),
        ),
        (pull, b'{"batch": 1}'),
        (chunks, b"not the vendor's bytes"),
        (layout.meta_subject(ARTIFACTS_BUCKET, artifact.target), b"{}"),
        (f"$KV.{METADATA_BUCKET}.timestamp.json", b"{}"),
        (f"$JS.API.STREAM.PURGE.{ARTIFACTS_STREAM}", b""),
    ]
    for subject, payload in attempts:
        with pytest.raises(nats.errors.TimeoutError):  # the server drops it: nothing answers
            await device_nc.request(subject, payload, timeout=0.5)
        await violation(device, subject)

    assert (await buckets.js.stream_info(ARTIFACTS_STREAM)).state.messages == before
    with pytest.raises(nats.js.errors.NotFoundError):
        await buckets.js.consumer_info(ARTIFACTS_STREAM, theirs)
    # Its own consumer it may make, and it reads the bytes through it.
    dest = tmp_path / "mine.bin"
    await download_of(device_nc, device, artifact, dest)
    assert dest.read_bytes() == artifact.data


def test_delivery_positions_are_read_from_both_reply_formats() -> None:
    v1 = "$JS.ACK.OBJ_artifacts.ota-dev-a.1.42.7.1733500000000000000.3"
    v2 = "$JS.ACK.hub.ACCHASH.OBJ_artifacts.ota-dev-a.1.42.7.1733500000000000000.3.tok"
    assert downloading.delivery_of(v1) == downloading.delivery_of(v2) == downloading.Delivery(42, 7, 3)
    with pytest.raises(ValueError, match="not a JetStream delivery"):
        downloading.delivery_of("_INBOX.x")
