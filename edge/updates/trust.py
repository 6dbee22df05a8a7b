"""Verify an update against the mesh's signed metadata, the way TUF specifies, before anything is installed.

python-tuf's client (tuf.ngclient.Updater) does TUF's client workflow: root rotations,
then timestamp, snapshot and targets, each checked for its signatures' threshold, its
version against the one trusted before (rollback), its expiry (freeze) and its hash
and version against the file that names it (mix-and-match). It runs on a worker thread
(it is synchronous), reading the tuf bucket through the agent's connection
(edge.updates.fetcher). What it trusts persists in `trusted_dir`, which enrolment fills
with the mesh's root.json: a rollback is refused after a restart too.

On top of TUF, the target itself: it must exist, be for this device's type, not be older
than the installed version (unless the campaign allows a downgrade) and find what it
depends on installed. Each refusal is an UpdateRefused naming its Refusal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import TargetFile
from tuf.ngclient import FetcherInterface, Updater

from core.updates.naming import target_path
from core.updates.versions import is_older
from edge.errors import EdgeError
from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.fetcher import BASE_URL, BucketFetcher

ROOT_FILE = "root.json"
# python-tuf's Updater is single-instance per metadata folder: one verification at a time.
_LOCKS: dict[str, asyncio.Lock] = {}


@dataclass(frozen=True)
class VerifiedTarget:
    """A target as the signed metadata describes it: what the download must match, and what it is for."""

    name: str
    version: str
    length: int
    sha256: str
    device_type: str
    depends: tuple[str, ...]


class MetadataUnavailable(EdgeError):
    """The signed metadata could not be read (the bucket did not answer, or trusted_dir could not be written).

    Not a refusal: nothing was found wrong, the update may be tried again.
    """


async def verify_target(
    nc: Client,
    trusted_dir: Path,
    *,
    name: str,
    version: str,
    device_type: str,
    installed_version: str | None,
    allow_downgrade: bool = False,
    installed: Mapping[str, str] | None = None,
) -> VerifiedTarget:
    """The signed target name/version, refreshed from the tuf bucket and checked; UpdateRefused otherwise.

    `installed` (every installed artifact's version by name) checks the target's depends;
    None leaves them unchecked. MetadataUnavailable when the metadata cannot be read.
    """
    return await verify(
        BucketFetcher(nc, asyncio.get_running_loop()),
        trusted_dir,
        name=name,
        version=version,
        device_type=device_type,
        installed_version=installed_version,
        allow_downgrade=allow_downgrade,
        installed=installed,
    )


async def verify(
    fetcher: FetcherInterface,
    trusted_dir: Path,
    *,
    name: str,
    version: str,
    device_type: str,
    installed_version: str | None,
    allow_downgrade: bool = False,
    installed: Mapping[str, str] | None = None,
) -> VerifiedTarget:
    """verify_target with the metadata read by `fetcher` (on a worker thread): any repository, as TUF's tests do."""
    try:
        path = target_path(name, version)
    except ValueError as exc:
        raise UpdateRefused(Refusal.UNKNOWN_TARGET, str(exc)) from None
    if not (trusted_dir / ROOT_FILE).exists():
        raise UpdateRefused(
            Refusal.SIGNATURES,
            f"no trusted {ROOT_FILE} in {trusted_dir}: provision the device again, or copy the mesh's root.json there",
        )
    async with _LOCKS.setdefault(str(trusted_dir), asyncio.Lock()):
        try:
            info = await asyncio.to_thread(_refresh, trusted_dir, fetcher, path)
        except tuf_errors.DownloadLengthMismatchError as exc:  # a file longer than the one named: not it
            raise UpdateRefused(Refusal.MIX_AND_MATCH, f"metadata not the one the snapshot names ({exc})") from None
        except tuf_errors.DownloadError as exc:
            raise MetadataUnavailable(f"the update metadata could not be read: {exc}") from None
        except tuf_errors.RepositoryError as exc:
            refusal, meaning = refusal_of(exc)
            raise UpdateRefused(refusal, f"{meaning} ({exc})") from None
        except OSError as exc:
            raise MetadataUnavailable(f"the trusted metadata in {trusted_dir} could not be kept: {exc}") from None
    if info is None:
        raise UpdateRefused(Refusal.UNKNOWN_TARGET, f"{path} is not in the signed targets")
    target = _described(info, name, version)
    check(
        target,
        device_type=device_type,
        installed_version=installed_version,
        allow_downgrade=allow_downgrade,
        installed=installed,
    )
    return target


def _refresh(trusted_dir: Path, fetcher: FetcherInterface, path: str) -> TargetFile | None:
    # bootstrap=None: the trust anchor is trusted_dir's root.json, from enrolment, then the
    # newest root python-tuf verified through the chain of root versions since.
    updater = Updater(str(trusted_dir), BASE_URL, fetcher=fetcher, bootstrap=None)
    updater.refresh()
    return updater.get_targetinfo(path)


def refusal_of(exc: tuf_errors.RepositoryError) -> tuple[Refusal, str]:
    """Which refusal a python-tuf verification error is, and what it means in a few words (pure).

    python-tuf raises BadVersionNumberError both for a version lower than the trusted one
    (rollback) and for a file whose version is not the one its parent names (mix-and-match);
    its messages tell them apart: "must be >=" and "<file>.json version" are the former.
    """
    text = str(exc)
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return Refusal.FREEZE, "expired metadata"
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return Refusal.SIGNATURES, "metadata not signed by enough trusted keys"
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        if "must be >=" in text or ".json version" in text:
            return Refusal.ROLLBACK, "metadata older than the version already trusted"
        return Refusal.MIX_AND_MATCH, "metadata not the version its parent names"
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return Refusal.MIX_AND_MATCH, "metadata not the one its parent names"
    if "is missing info for" in text:  # a newer snapshot that drops a file the trusted one listed
        return Refusal.ROLLBACK, "metadata that drops what the trusted version listed"
    return Refusal.MIX_AND_MATCH, "metadata that is not a valid file of its role"


def _described(info: TargetFile, name: str, version: str) -> VerifiedTarget:
    custom = info.custom if isinstance(info.custom, dict) else {}
    sha256 = info.hashes.get("sha256")
    if sha256 is None:
        raise UpdateRefused(Refusal.HASH, f"the signed target {info.path} has no SHA-256 to check the download against")
    depends = custom.get("depends", [])
    return VerifiedTarget(
        name=name,
        version=version,
        length=info.length,
        sha256=sha256,
        device_type=str(custom.get("device_type", "")),
        depends=tuple(str(item) for item in depends) if isinstance(depends, list) else (),
    )


def check(
    target: VerifiedTarget,
    *,
    device_type: str,
    installed_version: str | None,
    allow_downgrade: bool,
    installed: Mapping[str, str] | None,
) -> None:
    """The checks of the target itself (pure): device type, downgrade, depends; UpdateRefused for the first that fails.

    A dependency "name@version" is met by that artifact installed at that version or a
    newer one, "name" by any installed version.
    """
    if target.device_type != device_type:
        raise UpdateRefused(
            Refusal.DEVICE_TYPE,
            f"{target.name} {target.version} is for device type {target.device_type!r}, this device is {device_type!r}",
        )
    if installed_version is not None and not allow_downgrade and is_older(target.version, installed_version):
        raise UpdateRefused(
            Refusal.DOWNGRADE,
            f"{target.name} {target.version} is older than the installed {installed_version}: "
            "the campaign must allow a downgrade",
        )
    if installed is None:
        return
    for needed in target.depends:
        dependency, _, at_least = needed.partition("@")
        have = installed.get(dependency)
        if have is None or (at_least and is_older(have, at_least)):
            found = "not installed" if have is None else f"{have} installed"
            raise UpdateRefused(Refusal.DEPENDS, f"{target.name} {target.version} needs {needed} ({found})")
