"""The A/B installer: two slots of an application folder and a `current` link switched atomically.

    <slots>/a/            one version's files (the artifact's contents: edge.updates.installers.archive)
    <slots>/a.release     {"name": ..., "version": ...} of what slot a holds
    <slots>/b/            the other slot
    <slots>/current -> a  what runs; the service starts <slots>/current/...

install unpacks into the slot `current` does not point to (replacing what was there) and
touches nothing else; activate points `current` at it by renaming a new link over the old
one (rename is atomic: a reader sees the old link or the new, never none), then fsyncs the
folder; rollback points it back. A process already running keeps the files of its slot
open until it restarts; the old slot stays on disk until the next install replaces it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

from edge.updates.installers import InstallError, Prepared, Update
from edge.updates.installers.archive import sync_dir, unpack

SLOTS = ("a", "b")
CURRENT = "current"


class ABInstaller:
    """Installs into the inactive slot of `root` and switches `root/current`; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def download(self, fetch: Callable[[], Awaitable[Path]], update: Update) -> Path:
        return await fetch()

    async def install(self, artifact: Path, update: Update) -> Prepared:
        return await asyncio.to_thread(self._install, artifact, update)

    def _install(self, artifact: Path, update: Update) -> Prepared:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InstallError(
                f"cannot create the slots folder {self.root} ({exc.strerror}); check its parent"
            ) from None
        active = self.active_slot()
        slot = SLOTS[1] if active == SLOTS[0] else SLOTS[0]
        staging = self.root / f".incoming-{slot}"
        _remove(staging)
        unpack(artifact, staging)  # refused or broken: raises before the slot is touched
        _remove(self.root / slot)
        _remove(self._release(slot))
        staging.rename(self.root / slot)
        _write_synced(self._release(slot), json.dumps({"name": update.name, "version": update.version}).encode())
        sync_dir(self.root)
        return {"slot": slot, "previous_slot": active}

    async def activate(self, update: Update, prepared: Prepared) -> None:
        await asyncio.to_thread(self._point, prepared["slot"])

    async def commit(self, update: Update, prepared: Prepared) -> None:
        return None  # the switch is the whole change; the old slot stays for a manual rollback

    async def rollback(self, update: Update, prepared: Prepared) -> None:
        previous = prepared.get("previous_slot")
        if previous is None and "slot" in prepared and self.active_slot() == prepared["slot"]:
            await asyncio.to_thread(self._unpoint)  # the first install: there was nothing before it
        elif previous is not None and self.active_slot() != previous:
            await asyncio.to_thread(self._point, previous)

    async def failure(self, update: Update, prepared: Prepared) -> None:
        return None  # nothing was switched; the inactive slot is replaced by the next install

    def active_slot(self) -> str | None:
        """The slot `current` points to, None when there is none yet."""
        try:
            target = os.readlink(self.root / CURRENT)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InstallError(f"{self.root / CURRENT} is not a link ({exc.strerror}); move it away") from None
        if target not in SLOTS:
            raise InstallError(f"{self.root / CURRENT} points to {target!r}, not a slot; point it at a or b")
        return target

    def active_version(self) -> str | None:
        slot = self.active_slot()
        if slot is None:
            return None
        try:
            return str(json.loads(self._release(slot).read_bytes())["version"])
        except (OSError, ValueError, KeyError):
            return None

    def _release(self, slot: str) -> Path:
        return self.root / f"{slot}.release"

    def _point(self, slot: str) -> None:
        """Point `current` at `slot` atomically: a new link, renamed over the old one, the folder fsynced."""
        temporary = self.root / f".{CURRENT}.{slot}.tmp"
        _remove(temporary)
        os.symlink(slot, temporary)
        os.replace(temporary, self.root / CURRENT)
        sync_dir(self.root)

    def _unpoint(self) -> None:
        (self.root / CURRENT).unlink(missing_ok=True)
        sync_dir(self.root)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
