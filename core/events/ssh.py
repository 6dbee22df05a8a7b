"""Events about hosts the mesh reaches over SSH (transport ssh) instead of through an agent."""

from __future__ import annotations

from typing import Literal

from core import subjects
from core.events.base import Event


class SshHostRegistered(Event, frozen=True, kw_only=True, tag="device.ssh_registered.v1"):
    """A device is a host reached over SSH; its commands run through the SSH gateway.

    `host_key` is the pinned public host key (an OpenSSH line such as "ssh-ed25519
    AAAA..."), `fingerprint_sha256` its fingerprint as ssh-keygen prints it
    ("SHA256:..."), `trust` how it was pinned ("pinned": given by an operator,
    "tofu": fetched once on first use, at the operator's explicit request). The
    registration that comes last wins, which is how a host's key is re-pinned. Public
    data only: where the gateway's private keys are is kept on the control host, never
    in an event.

    Software updates (docs/updates.md, "SSH hosts"): a host registered with `update_dir`
    takes `update.install`, which the gateway verifies, downloads and installs over SFTP
    into A/B slots under `update_dir`; `device_type` is what its artifacts must be for,
    `health_check` a command line run on the host after the switch ("" for none), and
    `commit_timeout` the seconds the check has. `update_dir` "" means no updates (the
    default, so registrations recorded before updates existed decode unchanged).
    """

    device_id: str
    host: str
    port: int = 22
    user: str
    host_key: str
    fingerprint_sha256: str
    trust: Literal["pinned", "tofu"] = "pinned"
    auth: Literal["identity_file", "agent"] = "agent"  # which kind of credential, never which one
    exec_allowlist: list[str] = []
    device_type: str = ""
    update_dir: str = ""
    health_check: str = ""
    commit_timeout: float = 60.0

    @property
    def updates(self) -> bool:
        """Whether the gateway installs updates on this host."""
        return bool(self.update_dir)

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "ssh")
