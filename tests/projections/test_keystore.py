"""The data keys in files: created 0600 once, found, destroyed for good, and safe to pickle into the loader."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from core.sealing import SealingError, device_subject
from projections.keystore import FileKeyStore

DEV = device_subject("dev-a")


def test_a_key_is_made_once_readable_by_the_owner_only(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    assert keys.get(DEV) is None
    made = keys.create(DEV)
    path = tmp_path / "keys" / "devices" / "dev-a.key"
    assert keys.path(DEV) == path
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert keys.create(DEV).to_text() == made.to_text()  # a retried enrolment seals with the same key
    found = keys.get(DEV)
    assert found is not None and found.to_text() == made.to_text()
    assert [p.name for p in path.parent.iterdir()] == ["dev-a.key"]  # no temporary file left behind


def test_a_destroyed_key_is_gone_and_a_new_one_differs(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    made = keys.create(DEV)
    assert keys.destroy(DEV) == made.key_id
    assert keys.get(DEV) is None and not keys.path(DEV).exists()
    assert keys.destroy(DEV) is None
    assert keys.create(DEV).key_id != made.key_id


def test_a_bad_subject_or_damaged_file_is_named(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    with pytest.raises(SealingError, match="not a data subject"):
        keys.path("device:../../etc/passwd")
    keys.create(DEV)
    keys.path(DEV).write_text("garbage\n")
    with pytest.raises(SealingError, match=r"dev-a\.key is malformed"):
        keys.get(DEV)


def test_the_store_pickles_as_its_folder(tmp_path: Path) -> None:
    keys = FileKeyStore(tmp_path / "keys")
    made = keys.create(DEV)
    copy = pickle.loads(pickle.dumps(keys))
    assert copy.get(DEV).to_text() == made.to_text()
