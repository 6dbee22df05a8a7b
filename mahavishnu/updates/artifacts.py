"""The operators' steps on artifacts: add, list, show, remove.

`add` streams the file into the artifacts bucket (mahavishnu.updates.objects) and then
appends ArtifactAdded with its length and SHA-256, the operator as its actor, and one
audit record; `remove` deletes the bytes, appends ArtifactRemoved and audits. Which
artifacts exist is folded from those events (mahavishnu.updates.catalog): the stream is
the record of what was shipped, the bucket only holds the bytes. A step that cannot be
done is refused with ArtifactRefused, one line saying why and what to do.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from core import subjects
from core.errors import MahavishnuError
from core.events import ArtifactAdded, ArtifactRemoved
from core.store import EventStore
from core.updates import naming
from core.updates.objects import ObjectInfo
from mahavishnu.updates import catalog, objects
from mahavishnu.updates.catalog import Artifact

AUDIT_CATEGORY = "artifact"
ARTIFACT_EVENTS = f"{subjects.EVENTS_PREFIX}.artifact.>"


class ArtifactRefused(MahavishnuError):
    """An operator's step on an artifact is not possible: bad input, an artifact that exists or does not."""


@dataclass(frozen=True)
class Shown:
    artifact: Artifact
    stored: ObjectInfo | None  # the bytes' object in the bucket; None when they are missing


async def add(
    store: EventStore,
    path: Path,
    *,
    name: str,
    version: str,
    device_type: str,
    depends: Sequence[str] = (),
    actor: str,
    progress: Callable[[int, int], None] | None = None,
) -> Artifact:
    """Store the file as name@version for `device_type`, record it (`artifact.added`), audited; the artifact.

    ArtifactRefused for a bad name, version, device type or dependency, an empty or
    unreadable file, or a name@version that exists.
    """
    try:
        target = naming.target_path(name, version)
        naming.device_type(device_type)
        needs = catalog.parse_depends(depends)
    except ValueError as exc:
        raise ArtifactRefused(str(exc)) from None
    _check_file(path)
    existing = (await artifacts(store)).get(target)
    if existing is not None:
        raise ArtifactRefused(
            f"artifact {existing.ref} exists (added {existing.added_at:%Y-%m-%d %H:%M} by {existing.added_by}): "
            f"give another --version, or `mahavishnu artifact remove {existing.ref}` first"
        )
    try:
        stored = await objects.put_file(store.nc, target, path, progress=progress)
    except objects.ObjectExists as exc:
        raise ArtifactRefused(f"{exc}: run `mahavishnu artifact remove {name}@{version}` to clear it") from None
    except OSError as exc:
        raise ArtifactRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    added = ArtifactAdded(
        name=name,
        version=version,
        device_type=device_type,
        length=stored.length,
        sha256=stored.sha256,
        depends=needs,
        filename=path.name,
        actor=actor,
    )
    try:
        await store.append(added)
    except (Exception, asyncio.CancelledError):
        await objects.remove(store.nc, target)  # no bytes without the event that says what they are
        raise
    await _audit(store, actor, "add", added.name, added.version, length=stored.length, sha256=stored.sha256)
    return catalog.fold([added])[target]


async def artifacts(store: EventStore) -> dict[str, Artifact]:
    """Every artifact added and not removed, by target path, oldest first."""
    return catalog.fold([stored.event async for stored in store.read(ARTIFACT_EVENTS) if stored.event])


async def show(store: EventStore, ref: str) -> Shown:
    """One artifact, NAME@VERSION, with its object in the bucket. ArtifactRefused when there is none."""
    name, version = _ref(ref)
    artifact = (await artifacts(store)).get(naming.target_path(name, version))
    if artifact is None:
        raise ArtifactRefused(f"no artifact {name}@{version}: see `mahavishnu artifact list`")
    found = await objects.info(store.nc, naming.target_path(name, version))
    return Shown(artifact, found.info if found is not None and not found.info.deleted else None)


async def remove(store: EventStore, ref: str, *, actor: str, reason: str = "") -> None:
    """Delete NAME@VERSION's bytes and record it (`artifact.removed`), audited.

    Bytes left in the bucket without an ArtifactAdded (an add that died between the two)
    are removed the same way. ArtifactRefused when there is no such artifact.
    """
    name, version = _ref(ref)
    target = naming.target_path(name, version)
    known = target in await artifacts(store)
    found = await objects.info(store.nc, target)
    if not known and (found is None or found.info.deleted):
        raise ArtifactRefused(f"no artifact {name}@{version}: see `mahavishnu artifact list`")
    await objects.remove(store.nc, target)
    await store.append(ArtifactRemoved(name=name, version=version, reason=reason, actor=actor))
    await _audit(store, actor, "remove", name, version, reason=reason)


def _ref(ref: str) -> tuple[str, str]:
    try:
        return catalog.parse_ref(ref)
    except ValueError as exc:
        raise ArtifactRefused(str(exc)) from None


def _check_file(path: Path) -> None:
    """ArtifactRefused unless `path` is a regular, readable, non-empty file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ArtifactRefused(f"no file {path}: give the artifact's file") from None
    except OSError as exc:
        raise ArtifactRefused(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactRefused(f"{path} is not a regular file: give the artifact's file")
    if info.st_size == 0:
        raise ArtifactRefused(f"{path} is empty: an artifact needs its bytes")
    if not os.access(path, os.R_OK):
        raise ArtifactRefused(f"cannot read {path}: permission denied (check its mode and owner)")


async def _audit(store: EventStore, actor: str, step: str, name: str, version: str, **details: object) -> None:
    await store.audit.record(
        actor=actor, category=AUDIT_CATEGORY, action=f"artifact.{step}", target=f"{name}@{version}", details=details
    )
