"""The code index's secret-hash key: 32 random bytes in `<home>/code-hash.key`, 0600.

Findings carry an HMAC-SHA256 of each secret value under this key (ADR 0005), so equal
values can be traced across files and commits while nobody without the key can test a
guessed value against a hash. It is created once and must stay the same for hashes to
stay comparable; it is never logged, and its file must not be readable by others.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from pathlib import Path
from typing import Final

from projections.codeindex.errors import HashKeyError

__all__ = ["HASH_KEY_FILE", "code_hash_key"]

HASH_KEY_FILE: Final = "code-hash.key"
_KEY_BYTES: Final = 32
_HEX_KEY: Final = re.compile(r"[0-9a-f]{64}")


def code_hash_key(home_root: Path) -> bytes:
    """The 32-byte key, from `<home_root>/code-hash.key`, created (hex, 0600) if it is not there yet.

    Raises HashKeyError when the file is readable or writable by group or others (it could
    have been read: make it 0600, or remove it if it leaked, which changes every hash), when
    it is not 64 hexadecimal digits, or when it cannot be read.
    """
    path = home_root / HASH_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made earlier, or just now by another process: read it below
    except OSError as exc:
        raise HashKeyError(f"cannot create the code-index hash key {path}: {exc.strerror or exc}") from exc
    else:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(_KEY_BYTES) + "\n")
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise HashKeyError(
                f"{path} has permissions {mode:04o}, open to other users: run `chmod 600 {path}` "
                "(if others may have read it, remove it to make a new key; every secret hash changes)"
            )
        text = path.read_text().strip().lower()
    except OSError as exc:
        raise HashKeyError(f"cannot read the code-index hash key {path}: {exc.strerror or exc}") from exc
    if not _HEX_KEY.fullmatch(text):
        # Never quote the content: it is (or was meant to be) the key.
        raise HashKeyError(f"{path} must hold 64 hexadecimal digits (32 bytes); remove it to make a new key")
    return bytes.fromhex(text)
