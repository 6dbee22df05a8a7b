"""An SSH host's update settings (checked at registration) and the host-side command lines, run by a local sh."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from core.events import SshHostRegistered, decode
from mahavishnu.gateways.ssh import remote_ab
from mahavishnu.gateways.ssh.errors import SshError
from mahavishnu.gateways.ssh.registration import HostUpdates, check_updates
from tests.edge.updates.kit import release

FIXTURES = Path(__file__).parents[3] / "core" / "fixtures" / "events"


def settings(**changes: object) -> dict[str, object]:
    return {"device_type": "web", "update_dir": "/opt/app/", "health_check": None, "commit_timeout": None, **changes}


def test_update_settings_are_normalized_and_off_without_an_update_dir() -> None:
    assert check_updates(**settings()) == HostUpdates(device_type="web", update_dir="/opt/app")
    checked = check_updates(**settings(health_check="  curl -fs localhost:8080/health ", commit_timeout=5))
    assert checked is not None and (checked.health_check, checked.commit_timeout) == (
        "curl -fs localhost:8080/health",
        5,
    )
    off = dict.fromkeys(("device_type", "update_dir", "health_check", "commit_timeout"))
    assert check_updates(**off) is None


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"update_dir": None}, "--device-type apply to updates only: add --update-dir"),
        ({"update_dir": None, "device_type": None, "commit_timeout": 9}, "--commit-timeout apply to updates only"),
        ({"update_dir": "opt/app"}, "must be an absolute path on the host"),
        ({"update_dir": "/"}, "must be a folder of its own below /"),
        ({"update_dir": "/opt/../etc"}, "without '..'"),
        ({"device_type": None}, "--update-dir needs --device-type"),
        ({"device_type": "Web Server"}, "--device-type: device type 'Web Server'"),
        ({"health_check": "echo 'unclosed"}, '--health-check "echo \'unclosed" cannot be split'),
        ({"commit_timeout": 0}, "--commit-timeout 0 must be a number of seconds above 0"),
    ],
)
def test_bad_update_settings_are_refused_naming_the_flag(changes: dict[str, object], says: str) -> None:
    with pytest.raises(SshError) as refused:
        check_updates(**settings(**changes))
    assert says in str(refused.value)


def test_a_registration_recorded_before_updates_decodes_without_them() -> None:
    event = decode((FIXTURES / "device.ssh_registered.v1.json").read_bytes())
    assert isinstance(event, SshHostRegistered)
    assert not event.updates and (event.update_dir, event.device_type, event.commit_timeout) == ("", "", 60.0)


def sh(line: str) -> subprocess.CompletedProcess[str]:
    """Run one of remote_ab's command lines as sshd would hand it to the login shell."""
    return subprocess.run(["sh", "-c", line], capture_output=True, text=True, timeout=30, check=False)


def test_the_host_side_lines_install_switch_and_roll_back_in_a_folder_with_quotes_and_spaces(tmp_path: Path) -> None:
    root = tmp_path / "it's my app"
    root.mkdir()
    artifact = release(tmp_path, "1.0")
    sha = hashlib.sha256(artifact.read_bytes()).hexdigest()
    (root / remote_ab.UPLOAD).write_bytes(artifact.read_bytes())

    done = sh(remote_ab.install(str(root), sha256=sha, name="app", version="1.0"))
    assert done.returncode == 0, done.stderr
    assert remote_ab.parse_installed(done.stdout) == ("a", None)
    assert (root / "a" / "VERSION").read_text() == "1.0" and not (root / remote_ab.UPLOAD).exists()
    assert json.loads((root / "a.release").read_text()) == {"name": "app", "version": "1.0"}

    assert sh(remote_ab.point(str(root), "a")).returncode == 0
    assert os.readlink(root / "current") == "a" and not list(root.glob(".current.*"))
    assert sh(remote_ab.rollback(str(root), slot="b", previous_slot="a")).returncode == 0  # already right: kept
    assert os.readlink(root / "current") == "a"
    assert sh(remote_ab.rollback(str(root), slot="a", previous_slot=None)).returncode == 0  # the first: undone
    assert not (root / "current").is_symlink()


def test_the_install_refuses_a_copy_that_is_not_the_checked_artifact(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / remote_ab.UPLOAD).write_bytes(release(tmp_path, "1.0").read_bytes())
    done = sh(remote_ab.install(str(root), sha256="0" * 64, name="app", version="1.0"))
    assert done.returncode == 4 and "SHA-256 differs" in done.stderr
    assert sorted(p.name for p in root.iterdir()) == []  # nothing unpacked, the copy removed


def test_install_output_other_than_a_slot_is_an_error() -> None:
    assert remote_ab.parse_installed("noise\nb a\n") == ("b", "a")
    with pytest.raises(ValueError, match="unexpected output"):
        remote_ab.parse_installed("c\n")
    with pytest.raises(ValueError, match="not a slot"):
        remote_ab.point("/opt/app", "../x")
