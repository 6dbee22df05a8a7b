"""Where the SSH gateway finds each host's private key: a local file on the control host, never an event.

    $MAHAVISHNU_HOME/ssh/credentials.json   (0600)
    {"host-a": {"identity_file": "/root/.ssh/gw_ed25519", "passphrase_file": "/root/.ssh/gw.pass"}}

Only paths are kept, never key material or passphrases: the files stay where the
operator put them (and are read when a connection is opened). A host without an entry
authenticates with the SSH agent (and default keys) of the user running `up`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mahavishnu.gateways.ssh.errors import SshCredentialsError

FILE_NAME = "credentials.json"


@dataclass(frozen=True)
class Credentials:
    identity_file: Path | None = None
    passphrase_file: Path | None = None


def credentials_path(home_root: Path) -> Path:
    return home_root / "ssh" / FILE_NAME


def load_all(home_root: Path) -> dict[str, Credentials]:
    """Every host's credential paths; {} when none were recorded. SshCredentialsError when the file is damaged."""
    path = credentials_path(home_root)
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise SshCredentialsError(
            f"cannot read {path} ({exc}); fix it or register the hosts again with `mahavishnu device add-ssh`"
        ) from None
    found: dict[str, Credentials] = {}
    for device_id, entry in document.items() if isinstance(document, dict) else []:
        if isinstance(entry, dict):
            found[device_id] = Credentials(_path(entry.get("identity_file")), _path(entry.get("passphrase_file")))
    return found


def load(home_root: Path, device_id: str) -> Credentials:
    return load_all(home_root).get(device_id, Credentials())


def save(home_root: Path, device_id: str, credentials: Credentials) -> None:
    """Record (or with no identity file, forget) the host's paths; the file is written 0600, atomically."""
    entries = {
        device: {"identity_file": str(c.identity_file), "passphrase_file": _text(c.passphrase_file)}
        for device, c in load_all(home_root).items()
        if c.identity_file is not None
    }
    if credentials.identity_file is None:
        entries.pop(device_id, None)
    else:
        entries[device_id] = {
            "identity_file": str(credentials.identity_file),
            "passphrase_file": _text(credentials.passphrase_file),
        }
    path = credentials_path(home_root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        os.fchmod(file.fileno(), 0o600)
        json.dump(entries, file, indent=2, sort_keys=True)
    temporary.replace(path)


def _path(value: object) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None
