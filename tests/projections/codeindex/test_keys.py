"""The secret-hash key file: made once, 0600, refused when others could read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from projections.codeindex.errors import HashKeyError
from projections.codeindex.keys import HASH_KEY_FILE, code_hash_key


def test_made_once_with_owner_only_permissions(tmp_path: Path) -> None:
    key = code_hash_key(tmp_path)
    assert len(key) == 32
    path = tmp_path / HASH_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert code_hash_key(tmp_path) == key  # read back, not made again
    assert code_hash_key(tmp_path / ".." / tmp_path.name) == key


def test_keys_of_two_homes_differ(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert code_hash_key(tmp_path / "a") != code_hash_key(tmp_path / "b")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    key = code_hash_key(tmp_path)
    os.chmod(tmp_path / HASH_KEY_FILE, mode)
    with pytest.raises(HashKeyError) as raised:
        code_hash_key(tmp_path)
    message = str(raised.value)
    assert f"{mode:04o}" in message and "chmod 600" in message
    assert key.hex() not in message


def test_a_malformed_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / HASH_KEY_FILE
    path.write_text("not-a-key-but-maybe-a-secret\n")
    path.chmod(0o600)
    with pytest.raises(HashKeyError, match="64 hexadecimal digits") as raised:
        code_hash_key(tmp_path)
    assert "maybe-a-secret" not in str(raised.value)


def test_a_missing_home_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HashKeyError, match="cannot create the code-index hash key"):
        code_hash_key(tmp_path / "absent")
