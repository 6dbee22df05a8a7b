"""A download's partial file and its checkpoint beside `dest`, so a download resumes after a cut link or a restart.

`dest.part` holds the bytes written so far; `dest.part.json` says how many of them are
safe (flushed to disk before the checkpoint was written) and from which stream sequence
the next chunk comes. The checkpoint never claims more than the file holds: the file is
fsynced first, so after a crash the file may be longer than the checkpoint (cut back on
resume), never shorter. A checkpoint for another object (another nuid, length or
digest: the artifact was removed and added again) is not resumed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

HASH_BLOCK = 1024 * 1024


class Checkpoint(msgspec.Struct, frozen=True):
    target: str
    nuid: str
    length: int
    sha256: str
    written: int = 0  # bytes of the partial file that are safe
    chunks: int = 0  # chunks those bytes came in
    next_seq: int = 0  # the stream sequence to read on from (0: from the object's first chunk)


@dataclass
class Resumed:
    checkpoint: Checkpoint
    hasher: Any  # hashlib's sha256 of the first `written` bytes


class Partial:
    def __init__(self, dest: Path) -> None:
        self.file = dest.with_name(dest.name + ".part")
        self.sidecar = dest.with_name(dest.name + ".part.json")

    def resume(self, fresh: Checkpoint) -> Resumed:
        """Where to go on from: the saved checkpoint if it is for the same object and the file holds it, else `fresh`.

        Blocking (it re-hashes the partial file): run it off the event loop.
        """
        saved = self._load()
        same = saved is not None and (saved.target, saved.nuid, saved.length, saved.sha256) == (
            fresh.target,
            fresh.nuid,
            fresh.length,
            fresh.sha256,
        )
        if saved is None or not same or not self._holds(saved.written) or saved.written > saved.length:
            self.discard()
            self.file.parent.mkdir(parents=True, exist_ok=True)
            self.file.write_bytes(b"")
            self.save(fresh)
            return Resumed(fresh, hashlib.sha256())
        hasher = hashlib.sha256()
        with self.file.open("r+b") as handle:
            handle.truncate(saved.written)  # what came after the checkpoint is written again
            remaining = saved.written
            while remaining:
                block = handle.read(min(HASH_BLOCK, remaining))
                if not block:
                    break
                hasher.update(block)
                remaining -= len(block)
        return Resumed(saved, hasher)

    def save(self, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint atomically (a crash leaves the old one or the new one)."""
        temporary = self.sidecar.with_name(self.sidecar.name + ".tmp")
        temporary.write_bytes(msgspec.json.encode(checkpoint))
        os.replace(temporary, self.sidecar)

    def discard(self) -> None:
        for path in (self.file, self.sidecar, self.sidecar.with_name(self.sidecar.name + ".tmp")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _load(self) -> Checkpoint | None:
        try:
            return msgspec.json.decode(self.sidecar.read_bytes(), type=Checkpoint)
        except (FileNotFoundError, msgspec.DecodeError):
            return None  # none, or unreadable: start again

    def _holds(self, written: int) -> bool:
        try:
            return self.file.stat().st_size >= written
        except FileNotFoundError:
            return False
