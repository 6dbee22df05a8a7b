"""The trust's test helpers: a clean tuf bucket, a device under its real permissions, files re-signed by hand.

Each test keeps its trust (keys, signed files) in a home of its own and empties the
module's tuf bucket first, so one module's server serves tests that each begin a repository.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from securesystemslib.signer import Signer
from tuf.api.metadata import Metadata, Snapshot, Targets, Timestamp

from core import subjects
from core.store import EventStore, Identity, connect
from core.updates.naming import METADATA_BUCKET, METADATA_STREAM
from mahavishnu.control import devices
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.runtime.home import Home
from mahavishnu.updates.trust import keys, metadata
from mahavishnu.updates.trust.control import trust_files
from tests.harness import Mesh

# The target the device-side trust tests stage: an artifact of pump devices, 5 bytes.
PUMP = {"name": "pump-fw", "length": 5, "sha256": "ab" * 32, "device_type": "pump"}


async def fresh_buckets(js: JetStreamContext) -> None:
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(METADATA_STREAM)
    await ensure_update_buckets(js, replicas=1)


async def bucket_get(js: JetStreamContext, key: str) -> bytes:
    entry = await (await js.key_value(METADATA_BUCKET)).get(key)
    assert entry.value is not None
    return entry.value


async def bucket_put(js: JetStreamContext, key: str, data: bytes) -> None:
    await (await js.key_value(METADATA_BUCKET)).put(key, data)


async def enrolled_device(mesh: Mesh, store: EventStore, folder: Path, device_id: str) -> Client:
    """A device enrolled on the mesh, connected with its own certificate: the permissions every device gets."""
    await devices.enroll(mesh.home, mesh.settings, store, device_id, out_dir=folder)
    identity = Identity(mesh.identity.url, folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    return await connect(
        identity, name=device_id, reconnect=False, inbox_prefix=subjects.device_inbox_prefix(device_id)
    )


def give_root(home: Home, trusted_dir: Path) -> Path:
    """What enrolment does once the trust exists: the mesh's current root.json in the device's trusted folder."""
    root = trust_files(home).current_root()
    assert root is not None
    trusted_dir.mkdir(parents=True, exist_ok=True)
    (trusted_dir / "root.json").write_bytes(root)
    return trusted_dir


def online_signer(home: Home, role: str) -> Signer:
    return keys.online(trust_files(home).keys, role)[0]


def newest(home: Home, role: str) -> tuple[str, Metadata[Timestamp] | Metadata[Snapshot] | Metadata[Targets]]:
    found = trust_files(home).newest(role)
    assert found is not None
    return found[0], Metadata.from_bytes(found[1])


def timestamp_at(home: Home, now: datetime, signer: Signer | None = None) -> bytes:
    """The next timestamp.json as if signed at `now` (expired when long past), by `signer` or the mesh's key."""
    name, snapshot = newest(home, "snapshot")
    _, current = newest(home, "timestamp")
    data = (trust_files(home).repository / name).read_bytes()
    assert isinstance(current.signed, Timestamp)
    timestamp = metadata.next_timestamp(current.signed, data, snapshot.signed.version, now)
    timestamp.sign(signer or online_signer(home, "timestamp"))
    return metadata.to_bytes(timestamp)
