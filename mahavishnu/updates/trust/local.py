"""The mesh's own copy of its signed metadata and keys, under $MAHAVISHNU_HOME/trust (files only; stdlib only).

    trust/keys/<role>/<keyid>.key   the online private keys, 0600 (snapshot and timestamp always;
                                    root and targets unless `trust init --offline-keys DIR`)
    trust/repository/               the newest signed files, named as in the bucket: every
                                    N.root.json, the newest N.targets.json and N.snapshot.json,
                                    timestamp.json; what `publish` copies to the tuf bucket
    trust/staged/targets.json       the next targets, waiting for its offline keys' signatures
    trust/signing.lock              one change of the trust at a time on this host

The repository folder is the signer's working copy and the bucket what devices read: a
file is signed here first, then published (stored in the bucket, TrustMetadataPublished
appended), so a mesh whose bucket was lost publishes the same files again at its next
`up`. Light on purpose: enrolment reads the current root.json through it without loading
python-tuf.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_VERSIONED = re.compile(r"([1-9][0-9]*)\.(root|targets|snapshot)\.json")
TIMESTAMP_FILE = "timestamp.json"


@dataclass(frozen=True)
class TrustFiles:
    folder: Path  # $MAHAVISHNU_HOME/trust

    @classmethod
    def of(cls, home_root: Path) -> TrustFiles:
        return cls(home_root / "trust")

    @property
    def keys(self) -> Path:
        return self.folder / "keys"

    @property
    def repository(self) -> Path:
        return self.folder / "repository"

    @property
    def staged(self) -> Path:
        return self.folder / "staged" / "targets.json"

    def initialised(self) -> bool:
        return (self.repository / "1.root.json").is_file()

    def versions(self, role: str) -> list[int]:
        """The versions of `role` held here, oldest first (root, targets, snapshot)."""
        found = (_VERSIONED.fullmatch(path.name) for path in self.repository.glob(f"*.{role}.json"))
        return sorted(int(match[1]) for match in found if match is not None)

    def newest(self, role: str) -> tuple[str, bytes] | None:
        """The newest file of `role` as (name, bytes), or None before `trust init`."""
        if role == "timestamp":
            path = self.repository / TIMESTAMP_FILE
            return (TIMESTAMP_FILE, path.read_bytes()) if path.is_file() else None
        versions = self.versions(role)
        if not versions:
            return None
        name = f"{versions[-1]}.{role}.json"
        return name, (self.repository / name).read_bytes()

    def current_root(self) -> bytes | None:
        """The newest root.json: what a device is given at enrolment as the root it trusts."""
        newest = self.newest("root")
        return None if newest is None else newest[1]

    def give_root(self, trusted_dir: Path) -> bool:
        """Put the current root.json into `trusted_dir` if it holds none (a verifier of the control host's own,
        as the SSH gateway's); False when it has one already or the trust does not exist yet."""
        root = self.current_root()
        if root is None or (trusted_dir / "root.json").exists():
            return False
        _write_atomic(trusted_dir / "root.json", root, mode=0o644)
        return True

    def write(self, name: str, data: bytes, *, replaces: str | None = None) -> None:
        """Store a signed file (atomically); `replaces` names the older version it supersedes (deleted after)."""
        _write_atomic(self.repository / name, data, mode=0o644)
        if replaces is not None and replaces != name:
            (self.repository / replaces).unlink(missing_ok=True)

    def write_staged(self, data: bytes) -> None:
        _write_atomic(self.staged, data, mode=0o644)

    def read_staged(self) -> bytes | None:
        return self.staged.read_bytes() if self.staged.is_file() else None

    def drop_staged(self) -> None:
        self.staged.unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[None]:
        """Hold the trust's lock (waited for off the event loop): `up`'s refresher and an `artifact add`
        never sign from the same version, in one process or two."""
        handle = await asyncio.to_thread(_lock, self.folder / "signing.lock")
        try:
            yield
        finally:
            handle.close()  # closing the file releases its lock


def _lock(path: Path) -> IO[str]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = open(path, "a")  # noqa: SIM115 (held open as the lock until locked() closes it)
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
