"""The file-system side of the CA: private directories, atomic and private writes.

Every write goes to a temporary file in the target directory and is moved into place
with os.replace, so a reader sees the old file or the new one, never half of one; a
private key's temporary file is created 0600, so the key is never readable by others,
not even for a moment and not even when it replaces a file with looser permissions.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from certs.errors import CertError, CorruptCAError

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700


def ensure_dir(directory: Path) -> Path:
    """Create `directory` and any missing parents, each 0700; existing directories keep their mode.

    Raises CertError when it cannot be created (a file is in the way, no permission).
    """
    missing: list[Path] = []
    current = directory
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    try:
        for path in reversed(missing):
            try:
                path.mkdir(mode=DIR_MODE)
            except FileExistsError:
                continue  # made meanwhile by someone else: not ours to chmod
            os.chmod(path, DIR_MODE)  # undo the umask
        if not directory.is_dir():
            raise NotADirectoryError(20, "not a directory")
    except OSError as exc:
        raise CertError(f"cannot create directory {directory}: {exc.strerror or exc}") from exc
    return directory


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_MODE, sync: bool = True) -> Path:
    """Write `data` to `path` atomically, created with `mode` from the start.

    With `sync` False the data is not forced to disk here: the caller does it later with
    `sync_files` (the CA's lock need not wait for a disk). Raises CertError when the
    directory is not writable.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                if sync:
                    os.fsync(handle.fileno())
            os.chmod(tmp, mode)  # undo the umask: the mode is part of the contract
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise CertError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def write_private(path: Path, data: bytes, *, sync: bool = True) -> Path:
    """Write a private key atomically, never readable by anyone but the owner. Raises CertError."""
    return write_atomic(path, data, mode=PRIVATE_MODE, sync=sync)


def sync_files(*paths: Path) -> None:
    """Force files written with `sync=False` to disk, then their folders' entries. Raises CertError."""
    try:
        for path in (*paths, *dict.fromkeys(path.parent for path in paths)):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as exc:
        raise CertError(f"cannot write {exc.filename}: {exc.strerror or exc}") from exc


def write_json(path: Path, value: Any) -> Path:
    """Write `value` as indented JSON atomically. Raises CertError."""
    return write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def append_line(path: Path, line: bytes) -> None:
    """Append one line to `path` (created 0644) and make it durable before returning. Raises CertError.

    One write of the whole line: a crash leaves the line whole or torn at the end, never
    interleaved with another; readers drop a torn last line (it was never acknowledged).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, PUBLIC_MODE)
        try:
            _cut_torn_tail(fd)
            os.write(fd, line if line.endswith(b"\n") else line + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise CertError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _cut_torn_tail(fd: int, window: int = 1 << 16) -> None:
    """Drop a last line a crash cut short, so that the next line starts on a line of its own."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - window)
    tail = os.pread(fd, size - start, start)
    os.ftruncate(fd, start + tail.rfind(b"\n") + 1)


def read_from(path: Path, offset: int) -> bytes:
    """The bytes of `path` from `offset` on (b"" when it does not exist). Raises CertError."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise CertError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_bytes(path: Path) -> bytes:
    """The bytes of `path`; raises CertError saying which file could not be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_json(path: Path, default: Any) -> Any:
    """The JSON value in `path`, or `default` when the file does not exist.

    Raises CorruptCAError when the file is not JSON, CertError when it cannot be read.
    """
    if not path.exists():
        return default
    try:
        return json.loads(read_bytes(path))
    except ValueError as exc:
        raise CorruptCAError(f"{path} is not valid JSON ({exc}); restore it from a backup") from exc
