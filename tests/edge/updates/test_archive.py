"""The A/B artifact format: what an archive may hold, checked before a byte is written."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from edge.updates.installers import InstallError
from edge.updates.installers.archive import problems, unpack
from tests.edge.updates.kit import artifact


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_files_folders_and_links_inside_the_slot_are_fine() -> None:
    members = [
        member("./bin", tarfile.DIRTYPE),
        member("./bin/run"),
        member("run", tarfile.SYMTYPE, "bin/run"),
        member("bin/up", tarfile.SYMTYPE, "../run"),  # a link to a link, inside
        member("lib/x", tarfile.SYMTYPE, "../bin/../bin/run"),
    ]
    assert problems(members) == []


@pytest.mark.parametrize(
    ("members", "says"),
    [
        ([member("../evil")], "leads out of the slot"),
        ([member("a/../../evil")], "leads out of the slot"),
        ([member("/etc/passwd")], "absolute name"),
        ([member("out", tarfile.SYMTYPE, "/etc")], "absolute"),
        ([member("out", tarfile.SYMTYPE, "../..")], "leads out of the slot"),
        ([member("d/out", tarfile.SYMTYPE, "../../x")], "leads out of the slot"),
        ([member("here", tarfile.SYMTYPE, "."), member("out", tarfile.SYMTYPE, "here/..")], "passes through"),
        ([member("up", tarfile.SYMTYPE, "sub"), member("up/file")], "under the link"),
        ([member("hard", tarfile.LNKTYPE, "bin/run")], "hard link"),
        ([member("fifo", tarfile.FIFOTYPE)], "FIFO"),
        ([member("dev", tarfile.CHRTYPE)], "device"),
        ([member("twice"), member("./twice")], "twice"),
    ],
)
def test_an_archive_that_could_write_outside_its_slot_is_refused(members: list[tarfile.TarInfo], says: str) -> None:
    found = problems(members)
    assert len(found) == 1 and says in found[0], found


def test_a_refused_archive_writes_nothing(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"first a harmless file"
        info = tarfile.TarInfo("fine.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(InstallError, match=r"refused: '../escaped.txt'"):
        unpack(evil, tmp_path / "slot")
    assert not (tmp_path / "slot").exists() and not (tmp_path / "escaped.txt").exists()


def test_unpacking_keeps_files_and_links(tmp_path: Path) -> None:
    archive = artifact(tmp_path / "ok.tar.gz", {"bin/run": b"#!/bin/sh\n"}, links={"run": "bin/run"})
    unpack(archive, tmp_path / "slot")
    assert (tmp_path / "slot" / "run").resolve() == (tmp_path / "slot" / "bin" / "run").resolve()
    assert (tmp_path / "slot" / "bin" / "run").read_bytes() == b"#!/bin/sh\n"


def test_something_that_is_not_a_tar_gz_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar at all")
    with pytest.raises(InstallError, match=r"cannot be unpacked .* must be a \.tar\.gz"):
        unpack(junk, tmp_path / "slot")
    assert not (tmp_path / "slot").exists()
