"""Registering a host the mesh reaches over SSH: pin its key, note its credentials locally, record the event.

Order, as for enrolment (mahavishnu.control.devices): check everything first (id, address, host
key, that the identity file opens, the allowlist), then write the local credential paths,
ensure the host's command consumer, and record `device.ssh_registered.v1` and its audit
entry. The event holds the pinned public key and its fingerprint, never a credential.
"""

from __future__ import annotations

import asyncio
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from certs import validate_identity
from core import subjects
from core.events import SshHostRegistered
from core.store import EventStore
from core.updates import naming
from mahavishnu.control import devices
from mahavishnu.control.permissions import COMMANDS_STREAM
from mahavishnu.gateways.ssh import credentials as ssh_credentials
from mahavishnu.gateways.ssh.credentials import Credentials
from mahavishnu.gateways.ssh.errors import SshError
from mahavishnu.gateways.ssh.hosts import HostKey, normalize_allowlist, parse_host_key
from mahavishnu.gateways.ssh.pool import fetch_host_key, load_identity
from mahavishnu.runtime.home import Home

Trust = Literal["pinned", "tofu"]


async def resolve_host_key(
    *,
    host_key: str | None,
    host_key_file: Path | None,
    trust_on_first_use: bool,
    host: str,
    port: int,
    timeout: float,
) -> tuple[HostKey, Trust]:
    """The key to pin: given, read from a file, or (only when asked) fetched from the host now.

    SshError when not exactly one way is chosen; HostKeyError when the key is malformed.
    """
    chosen = [host_key is not None, host_key_file is not None, trust_on_first_use]
    if sum(chosen) != 1:
        raise SshError(
            "say how to trust the host's key, exactly one of: --host-key 'ssh-ed25519 AAAA...', "
            "--host-key-file FILE (e.g. a copy of the host's /etc/ssh/ssh_host_ed25519_key.pub), "
            "or --trust-on-first-use (pin whatever key the host presents now)"
        )
    if host_key is not None:
        return parse_host_key(host_key), "pinned"
    if host_key_file is not None:
        return parse_host_key(_read(host_key_file), origin=str(host_key_file)), "pinned"
    return await fetch_host_key(host, port, timeout=timeout), "tofu"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise SshError(f"cannot read --host-key-file {path}: {exc.strerror or exc}") from None


def check_address(host: str, port: int, user: str) -> None:
    """SshError naming the wrong part of an SSH address (pure)."""
    if not host or any(c.isspace() for c in host) or host.startswith("-"):
        raise SshError(f"--host {host!r} is not a host name or address")
    if not 1 <= port <= 65535:
        raise SshError(f"--port {port} must be between 1 and 65535")
    if not user or any(c.isspace() or c in "@:/" for c in user) or user.startswith("-"):
        raise SshError(f"--user {user!r} is not a user name (no spaces, '@', ':' or '/')")


@dataclass(frozen=True)
class HostUpdates:
    """A host's update settings (non-secret, recorded in its registration); see docs/updates.md, "SSH hosts"."""

    device_type: str
    update_dir: str  # absolute, on the host: the A/B slots and `current`
    health_check: str = ""  # a command line the host's shell runs after the switch; "" for none
    commit_timeout: float = 60.0


def check_updates(
    *, device_type: str | None, update_dir: str | None, health_check: str | None, commit_timeout: float | None
) -> HostUpdates | None:
    """The update settings, normalized; None when updates are off (no --update-dir); SshError naming a bad one."""
    if not update_dir:
        flags = (("--device-type", device_type), ("--health-check", health_check), ("--commit-timeout", commit_timeout))
        given = [flag for flag, value in flags if value is not None]
        if given:
            raise SshError(f"{', '.join(given)} apply to updates only: add --update-dir DIR (absolute, on the host)")
        return None
    if not update_dir.startswith("/") or any(c in update_dir for c in "\0\n\r"):
        raise SshError(f"--update-dir {update_dir!r} must be an absolute path on the host, e.g. /opt/app")
    folder = posixpath.normpath(update_dir)
    if folder in ("/", "//") or ".." in update_dir.split("/"):
        raise SshError(f"--update-dir {update_dir!r} must be a folder of its own below /, without '..', e.g. /opt/app")
    if device_type is None:
        raise SshError("--update-dir needs --device-type T: the type the host's artifacts are built for")
    try:
        naming.device_type(device_type)
    except ValueError as exc:
        raise SshError(f"--device-type: {exc}") from None
    line = (health_check or "").strip()
    if line:
        try:
            shlex.split(line)
        except ValueError as exc:
            raise SshError(f"--health-check {health_check!r} cannot be split ({exc}); fix its quoting") from None
    timeout = 60.0 if commit_timeout is None else commit_timeout
    if not timeout > 0:
        raise SshError(f"--commit-timeout {commit_timeout} must be a number of seconds above 0")
    return HostUpdates(device_type=device_type, update_dir=folder, health_check=line, commit_timeout=float(timeout))


async def register(
    home: Home,
    store: EventStore,
    device_id: str,
    *,
    host: str,
    port: int,
    user: str,
    host_key: HostKey,
    trust: Trust,
    credentials: Credentials,
    allow: list[str],
    updates: HostUpdates | None = None,
    actor: str = "control",
    ack_wait_s: float = devices.ACK_WAIT_S,
) -> SshHostRegistered:
    """Register (or re-register) an SSH host; see the module docstring. SshError when something is wrong."""
    validate_identity(device_id)
    check_address(host, port, user)
    if device_id in devices.devices(home):
        raise SshError(
            f"{device_id} is enrolled with a certificate (it runs an agent); give the SSH host an id of its own"
        )
    if credentials.identity_file is not None:  # fail now, not at its first command
        await asyncio.to_thread(load_identity, credentials.identity_file, credentials.passphrase_file)
    try:
        allowlist = normalize_allowlist(allow)
    except ValueError as exc:
        raise SshError(str(exc)) from None
    ssh_credentials.save(home.root, device_id, credentials)
    consumer = subjects.device_consumer(device_id)
    await store.ensure_durable(COMMANDS_STREAM, consumer, devices.consumer_config(device_id, ack_wait_s))
    event = SshHostRegistered(
        device_id=device_id,
        host=host,
        port=port,
        user=user,
        host_key=host_key.line,
        fingerprint_sha256=host_key.fingerprint,
        trust=trust,
        auth="identity_file" if credentials.identity_file is not None else "agent",
        exec_allowlist=allowlist,
        actor=actor,
        device_type=updates.device_type if updates else "",
        update_dir=updates.update_dir if updates else "",
        health_check=updates.health_check if updates else "",
        commit_timeout=updates.commit_timeout if updates else 60.0,
    )
    await store.append(event)
    await store.audit.record(
        actor=actor,
        category="identity",
        action="device.add_ssh",
        target=device_id,
        details={
            "endpoint": f"{user}@{host}:{port}",
            "host_key": host_key.fingerprint,
            "trust": trust,
            "auth": event.auth,
            "exec_allowlist": len(allowlist),
            "update_dir": event.update_dir,
        },
    )
    return event
