"""Builders of the update tests: real tar.gz artifacts, hook scripts, and the two mesh steps done on local files."""

from __future__ import annotations

import hashlib
import io
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.installers.ab import ABInstaller
from edge.updates.pipeline import Checks, Request, run_update
from edge.updates.record import Record, Records


def artifact(path: Path, files: dict[str, bytes], *, links: dict[str, str] | None = None) -> Path:
    """A .tar.gz holding `files` (name -> bytes) and symbolic `links` (name -> target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def release(folder: Path, version: str) -> Path:
    """An artifact of an application whose `VERSION` file says `version`."""
    return artifact(
        folder / f"app-{version}.tar.gz",
        {"VERSION": version.encode(), "bin/run": b"#!/bin/sh\necho running\n"},
        links={"run": "bin/run"},
    )


def script(folder: Path, name: str, body: str) -> Path:
    """An executable shell script `name` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@dataclass(frozen=True)
class Target:
    name: str
    version: str
    length: int
    sha256: str


@dataclass
class LocalSteps:
    """verify and download over files in a folder (the real ones read the mesh): what the pipeline calls them with."""

    files: dict[str, Path]  # version -> artifact
    refuse: UpdateRefused | None = None
    asked: list[dict[str, Any]] = field(default_factory=list)

    async def verify(self, **request: Any) -> Target:
        self.asked.append(request)
        if self.refuse is not None:
            raise self.refuse
        data = self.files[request["version"]].read_bytes()
        return Target(request["name"], request["version"], len(data), hashlib.sha256(data).hexdigest())

    async def download(self, target: Target, dest: Path) -> Path:
        return copied(self.files[target.version], target, dest)


def copied(source: Path, target: Target, dest: Path) -> Path:
    shutil.copyfile(source, dest)
    if hashlib.sha256(dest.read_bytes()).hexdigest() != target.sha256:
        dest.unlink()
        raise UpdateRefused(Refusal.HASH, f"{target.name} {target.version} is not the signed artifact")
    return dest


async def update(
    records: Records,
    installer: Any,
    steps: LocalSteps,
    version: str,
    *,
    work: Path,
    command_id: str | None = None,
    checks: Checks | None = None,
    allow_downgrade: bool = False,
) -> Record:
    request = Request(
        command_id=command_id or f"cmd-{version}",
        name="app",
        version=version,
        allow_downgrade=allow_downgrade,
    )
    return await run_update(
        records,
        installer,
        request,
        verify=steps.verify,
        download=steps.download,
        downloads=work / "downloads",
        checks=checks or Checks(),
    )


def current(installer: ABInstaller) -> str:
    """What `current` runs: its VERSION file."""
    return (installer.root / "current" / "VERSION").read_text()
