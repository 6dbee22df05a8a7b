"""`mahavishnu backup DIR` and `mahavishnu restore DIR`: the streams, and what a mesh needs around them.

A backup is a directory:

    manifest.json          what is in it, with the SHA-256 of every file (written last)
    streams/<NAME>.snap    a JetStream snapshot of each stream (core.store.snapshots), the
                           updates' buckets (artifacts, signed metadata) among them
    home/...               the state directory's certificates, CA registry, roles and
                           settings; its private keys and the devices' data keys only
                           with --include-keys

Left out, because they are rebuilt: the read models (from the streams), the nats-server
configuration (from the CA registry), the JetStream stores themselves (jetstream/, and a
cluster's cluster/: the snapshots are them), repository mirrors (fetched again), the HTTP
door's copies of artifacts (artifact-cache/: fetched again from the restored bucket).

`backup` asks the running mesh for the snapshots, or, with `up` stopped, a server it starts
for the occasion (then nothing else appends meanwhile: the backup is exactly the state).
`restore` runs with the mesh stopped: it checks the backup is complete and belongs to this
mesh (or, into an empty state directory, brings the mesh's keys from a backup that has
them), starts the server on its own, restores every stream with its sequences, and
rebuilds every read model from the restored streams.

Against a cluster, the servers started for the occasion are every node of `up --cluster`,
or, across hosts, this host's node while the other hosts' `up --node` run
(mahavishnu.runtime.offline); `restore` then runs on the control host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.errors
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from nats.aio.client import Client

from core.config import Settings
from core.errors import MahavishnuError
from core.store import EventStore
from core.store.nats_errors import from_exception
from core.store.snapshots import Snapshot, restore_stream, snapshot_stream
from core.updates.naming import BUCKET_STREAMS
from mahavishnu.runtime.buckets import ensure_update_buckets
from mahavishnu.runtime.bundle import NODE_JSON, read_node
from mahavishnu.runtime.clusterplan import stream_replicas
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.offline import control_connection
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.streams import streams_of
from projections.catalog import CATALOG, build
from projections.database import database_key
from projections.runner import ProjectionRunner
from projections.service import FolderLock

FORMAT = 1
MANIFEST = "manifest.json"
# Under the state directory: what a backup never carries (rebuilt or refetched). cluster/: the
# loopback nodes' stores; artifact-cache/: the HTTP door's copies of the bucket's artifacts.
_REBUILT = ("jetstream", "cluster", "readmodels", "nats", "mirrors", "artifact-cache")
_CHUNK = 1024 * 1024


class BackupError(MahavishnuError):
    """A backup cannot be made or restored; the message says why and what to do."""


@dataclass(frozen=True)
class Manifest:
    format: int
    mesh: str
    ca_fingerprint: str
    created_at: str
    keys_included: bool
    streams: dict[str, dict[str, Any]]  # name -> {file, sha256, bytes, config, state}
    files: dict[str, str]  # path under home/ -> sha256


def is_private(relative: Path) -> bool:
    """A private key or key file of the state directory (pure): kept out of backups unless asked for.

    The data keys (keys/...) among them: a backup without keys holds the sealed fields only
    as ciphertext, so erasing a device later also erases it from that backup.
    """
    name = relative.name
    return (
        relative.parts[0] == "keys"
        or name.endswith(".key")
        or name == "key.pem"
        or "key" in name.split(".")[0].split("-")
    )


def home_files(root: Path, *, include_keys: bool) -> list[Path]:
    """The state directory's files a backup carries, relative to `root`."""
    chosen = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or relative.parts[0] in _REBUILT or path.suffix in (".lock", ".pid", ".log"):
            continue
        if is_private(relative) and not include_keys:
            continue
        chosen.append(relative)
    return chosen


def ca_fingerprint(ca_pem: Path) -> str:
    """The SHA-256 fingerprint of the mesh CA's certificate: which mesh a backup belongs to."""
    return x509.load_pem_x509_certificate(ca_pem.read_bytes()).fingerprint(hashes.SHA256()).hex()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


# --- backup ------------------------------------------------------------------------------


def _empty_target(target: Path) -> None:
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new directory")
    (target / "streams").mkdir(parents=True, exist_ok=True)


async def backup(
    home: Home, settings: Settings, target: Path, *, include_keys: bool, out: Callable[[str], None] = print
) -> Manifest:
    """Snapshot every stream of the running mesh into `target` (new or empty), with the state directory's files."""
    home.check_ready()
    _empty_target(target)
    try:
        streams = await _snapshots(home, settings, target, out)
        manifest = Manifest(
            format=FORMAT,
            mesh=settings.mesh.name,
            ca_fingerprint=ca_fingerprint(home.ca_dir / "ca.pem"),
            created_at=datetime.now(UTC).isoformat(),
            keys_included=include_keys,
            streams=streams,
            files=_copy_home_files(home.root, target / "home", include_keys=include_keys),
        )
        (target / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")  # last: it means complete
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # it was new or empty: leave no half backup behind
        raise
    out(f"backup written to {target}" + (" (with private keys: keep it safe)" if include_keys else " (without keys)"))
    return manifest


def _copy_home_files(root: Path, target: Path, *, include_keys: bool) -> dict[str, str]:
    files = {}
    for relative in home_files(root, include_keys=include_keys):
        copy = target / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, copy)
        files[str(relative)] = file_sha256(copy)
    return files


async def _snapshots(home: Home, settings: Settings, target: Path, out: Callable[[str], None]) -> dict[str, Any]:
    streams: dict[str, dict[str, Any]] = {}
    async with control_connection(home, settings, "mahavishnu-backup") as connected:
        nc = connected.nc
        await EventStore(nc, streams_of(settings)).ensure_streams()  # a mesh never started has none yet
        await ensure_update_buckets(nc.jetstream(), replicas=stream_replicas(settings))
        # The updates' buckets too: the artifacts' bytes and their signed metadata are nowhere else.
        for name in (*(spec.name for spec in streams_of(settings)), *BUCKET_STREAMS):
            path = target / "streams" / f"{name}.snap"
            with path.open("wb") as sink:
                snapshot = await snapshot_stream(nc, name, sink, progress=_bytes_shown(f"  {name}"))
            _end_line()
            streams[name] = {
                "file": f"streams/{path.name}",
                "sha256": file_sha256(path),
                "bytes": snapshot.size,
                "config": snapshot.config,
                "state": snapshot.state,
            }
            out(f"{name}: {snapshot.state.get('messages', 0)} messages, {snapshot.size:,} bytes")
    return streams


# --- restore -----------------------------------------------------------------------------


def read_manifest(source: Path) -> Manifest:
    """The backup's manifest, checked against its files; BackupError naming what is missing or changed."""
    path = source / MANIFEST
    if not path.is_file():
        raise BackupError(f"{source} is not a complete backup: {MANIFEST} is missing (was the backup interrupted?)")
    try:
        manifest = Manifest(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise BackupError(f"{path} is not a backup manifest ({exc})") from None
    if manifest.format != FORMAT:
        raise BackupError(f"{source} is a backup of format {manifest.format}; this version reads format {FORMAT}")
    expected = {entry["file"]: entry["sha256"] for entry in manifest.streams.values()}
    expected |= {f"home/{relative}": digest for relative, digest in manifest.files.items()}
    for relative, digest in sorted(expected.items()):
        file = source / relative
        if not file.is_file():
            raise BackupError(f"{source} is incomplete: {relative} is missing")
        if file_sha256(file) != digest:
            raise BackupError(f"{source} is damaged: {relative} does not match its checksum in {MANIFEST}")
    return manifest


def _bring_home_files(source: Path, manifest: Manifest, home: Home) -> None:
    """Put the backup's state-directory files in place: into an empty home, or check it is the same mesh."""
    ca_pem = home.ca_dir / "ca.pem"
    if ca_pem.is_file():
        if ca_fingerprint(ca_pem) != manifest.ca_fingerprint:
            raise BackupError(
                f"{source} is a backup of another mesh (its CA differs from the one in {home.root}): "
                "restore it into an empty MAHAVISHNU_HOME"
            )
        return  # the same mesh: its own certificates and keys stay
    if not manifest.keys_included:
        raise BackupError(
            f"{source} was made without --include-keys, and {home.root} holds no mesh: a backup without keys "
            "restores only into the mesh it came from"
        )
    for relative in manifest.files:
        target = home.root / relative
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy2(source / "home" / relative, target)
        if is_private(Path(relative)):
            os.chmod(target, 0o600)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            yield block


async def restore(home: Home, settings: Settings, source: Path, *, out: Callable[[str], None] = print) -> None:
    """Restore every stream of the backup in `source` into this (stopped) mesh, then rebuild the read models."""
    manifest = read_manifest(source)
    if (home.root / NODE_JSON).is_file() and not read_node(home.root).services:
        raise BackupError(
            f"{home.root} is a node of a cluster across hosts: restore on the control host, "
            "with `up --node` running on the others"
        )
    lock = FolderLock(home.readmodels_dir)
    lock.acquire()  # refuses while `up` runs: restoring under a running mesh would mix two histories
    lock.release()
    _bring_home_files(source, manifest, home)
    prepare(home, settings)
    async with control_connection(home, settings, "mahavishnu-restore") as connected:
        nc = connected.nc
        for name, entry in manifest.streams.items():
            await _make_room(nc, name)
            snapshot = Snapshot(name, entry["config"], entry["state"], entry["bytes"])
            state = await restore_stream(
                nc, snapshot, _chunks(source / entry["file"]), progress=_bytes_shown(f"  {name}")
            )
            _end_line()
            if state.get("last_seq") != entry["state"].get("last_seq"):
                raise BackupError(f"{name} restored to sequence {state.get('last_seq')}, not its backup's")
            out(f"{name}: {state.get('messages', 0)} messages restored, last sequence {state.get('last_seq')}")
        store = EventStore(nc, streams_of(settings))
        key = database_key(home.root, os.environ)
        for name in sorted(CATALOG):
            _remove_read_model(home.readmodels_dir, name)
            runner = ProjectionRunner(build(name, home.data_keys), store, directory=home.readmodels_dir, key=key)
            await runner.open()
            try:
                applied = await runner.rebuild()
            finally:
                await runner.close()
            out(f"read model {name} rebuilt ({applied} events)")
    out(f"restored from {source}")


def _remove_read_model(folder: Path, name: str) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / name}.db{suffix}").unlink(missing_ok=True)


async def _make_room(nc: Client, name: str) -> None:
    """Delete an empty stream of that name (a mesh started once creates them); refuse one with messages."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"read stream {name} before restoring it") from exc
    if info.state.messages:
        raise BackupError(
            f"stream {name} already holds {info.state.messages} messages: restore only into an empty store "
            f"(stop the mesh and move its jetstream/ directory away first)"
        )
    try:
        await js.delete_stream(name)
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"replace the empty stream {name}") from exc


def _bytes_shown(label: str) -> Callable[[int], None]:
    def show(done: int) -> None:
        print(f"\r{label}: {done:,} bytes", end="", file=sys.stderr, flush=True)

    return show


def _end_line() -> None:
    with contextlib.suppress(OSError):
        print(file=sys.stderr, flush=True)
