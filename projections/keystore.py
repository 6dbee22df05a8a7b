"""Data keys in files: one 0600 file per data subject under $MAHAVISHNU_HOME/keys (thin I/O over core.sealing).

    keys/devices/<device id>.key     "<key id> <secret hex>", created at enrolment

Both sides of the mesh use it: the control commands create and destroy keys (enrolment,
`mahavishnu erase`), the devices read model opens sealed fields with them. It lives in
`projections` because `mahavishnu` imports `projections`, never the other way round, and
`core` keeps only the pure sealing and the `KeyStore` protocol.

The keys are not wrapped with a mesh key: the wrapping key would sit beside them with the
same permissions, so it would guard against nothing a 0600 file does not, and a stray copy
of a destroyed key file (a journal, a snapshot) would stay openable as long as it lived.
Backups leave this folder out unless made with --include-keys (mahavishnu.control.backup).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from core.sealing import DataKey, SealingError, new_data_key

_SUBJECT = re.compile(r"([a-z]+):([a-z0-9][a-z0-9-]{0,62})")


class FileKeyStore:
    """The data keys under `root` (a `core.sealing.KeyStore`); stateless apart from the folder, so it pickles
    into the bulk loader's child process as a path."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, subject: str) -> Path:
        """The key file of `subject` ("device:dev-a" -> root/devices/dev-a.key); SealingError for a bad name."""
        found = _SUBJECT.fullmatch(subject)
        if found is None:
            raise SealingError(f"{subject!r} is not a data subject like 'device:dev-a'")
        return self.root / f"{found[1]}s" / f"{found[2]}.key"

    def get(self, subject: str) -> DataKey | None:
        """The subject's key, None when it has none (never had, or erased); SealingError when the file is damaged."""
        path = self.path(subject)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SealingError(f"cannot read the data key {path}: {exc.strerror}") from None
        return DataKey.from_text(text, where=str(path))

    def create(self, subject: str) -> DataKey:
        """The subject's key, made now (0600) if it has none; an existing key is kept, so a retried enrolment
        seals with the same key. Written to a temporary file and linked into place: a reader never sees half."""
        existing = self.get(subject)
        if existing is not None:
            return existing
        path = self.path(subject)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = new_data_key()
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(key.to_text())
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)  # fails if another process made one meanwhile: then that one counts
            except FileExistsError:
                return self.get(subject) or key
        finally:
            temporary.unlink(missing_ok=True)
        _sync_folder(path.parent)
        return key

    def destroy(self, subject: str) -> str | None:
        """Delete the subject's key; returns its id, or None when there was none.

        Best effort at making the bytes unrecoverable: the file is overwritten with random
        bytes and synced before it is unlinked. A copy-on-write or journaling filesystem, an
        SSD's wear levelling or a disk snapshot can still keep the old blocks; the guarantee
        is that no file of the mesh holds the key any more.
        """
        path = self.path(subject)
        key = self.get(subject)
        if key is None:
            return None
        size = path.stat().st_size
        with path.open("r+b") as handle:
            handle.write(secrets.token_bytes(size))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        _sync_folder(path.parent)
        return key.key_id


def _sync_folder(folder: Path) -> None:
    """Make a file's creation or removal durable (the directory entry), where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
