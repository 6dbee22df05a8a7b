"""The artifact format of the A/B installer: a gzip-compressed tar whose contents become the new slot.

What an archive may hold (anything else refuses the whole artifact before a byte is written):
- regular files and directories, with relative names ("./" prefixes are fine);
- symbolic links whose target is relative and stays inside the slot, resolved from the
  link's own folder, without passing through another link of the archive.
Refused: absolute names, names with "..", a name given twice, a member under a link of the
archive, hard links, devices, FIFOs, absolute links, links that lead out of the slot.
Modes are kept without setuid/setgid bits; owners are not (the files belong to the agent's user).

`problems(members)` is the pure check; `unpack(archive, dest)` checks, then extracts into
`dest`, which must not exist yet (the caller moves it into place once complete).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from edge.updates.installers import InstallError


def unpack(archive: Path, dest: Path) -> None:
    """Extract the artifact at `archive` into the new folder `dest`; InstallError when it is refused or unreadable."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            wrong = problems(members)
            if wrong:
                raise InstallError(f"the artifact {archive.name} is refused: {'; '.join(wrong[:3])}")
            dest.mkdir(mode=0o755)
            # The "data" filter is a second guard behind problems(): it refuses the same escapes.
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InstallError(
            f"the artifact {archive.name} cannot be unpacked ({exc}); it must be a .tar.gz (docs/updates.md)"
        ) from None
    _sync_tree(dest)


def problems(members: Iterable[tarfile.TarInfo]) -> list[str]:
    """Why these members may not become a slot, one line each; [] when they may (pure)."""
    found: list[str] = []
    members = list(members)
    names: dict[str, tarfile.TarInfo] = {}
    for member in members:
        name = _name(member.name)
        if name is None:
            found.append(f"{member.name!r} is an absolute name or leads out of the slot with '..'")
        elif name in names:
            found.append(f"{member.name!r} is in the archive twice")
        else:
            names[name] = member
    links = {name for name, member in names.items() if member.issym()}
    for name, member in names.items():
        under = next((link for link in links if name.startswith(link + "/")), None)
        if under is not None:
            found.append(f"{member.name!r} is under the link {under!r}, which could lead anywhere")
        elif member.islnk():
            found.append(f"{member.name!r} is a hard link; use a copy or a relative symbolic link")
        elif member.issym():
            problem = _link_problem(name, member.linkname, links)
            if problem:
                found.append(f"{member.name!r} links to {member.linkname!r}: {problem}")
        elif not (member.isfile() or member.isdir()):
            found.append(f"{member.name!r} is a device or FIFO; only files, folders and links are installed")
    return found


def _name(raw: str) -> str | None:
    """The member's name relative to the slot ("a/b"), "" for the slot itself, None when it escapes."""
    path = PurePosixPath(raw)
    if path.is_absolute() or ".." in path.parts:
        return None
    return "/".join(part for part in path.parts if part != ".")


def _link_problem(name: str, target: str, links: set[str]) -> str:
    """Why a link at `name` to `target` may escape the slot; "" when it stays inside (pure)."""
    if not target or PurePosixPath(target).is_absolute():
        return "an absolute or empty target"
    parts = PurePosixPath(name).parent.parts + PurePosixPath(target).parts
    stack: list[str] = []
    for index, part in enumerate(parts):
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return "it leads out of the slot"
            stack.pop()
            continue
        stack.append(part)
        if "/".join(stack) in links and index < len(parts) - 1:
            return "it passes through another link"
    return ""


def _sync_tree(root: Path) -> None:
    """fsync every file and folder under `root`: the slot is on disk before anything points at it."""
    for folder, _dirs, files in os.walk(root):
        for file in files:
            path = os.path.join(folder, file)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_dir(Path(folder))


def sync_dir(folder: Path) -> None:
    """fsync a folder: a rename or a new link in it is on disk once this returns."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
