"""The errors of SSH-managed hosts (the gateway, registration); their place in the tree is drawn in core.errors.

asyncssh's and the socket layer's errors become these in `mahavishnu.gateways.ssh.pool.connect`,
with `raise ... from exc`. No message names a private key's content or a passphrase;
paths of identity files are named, since that is what an operator has to fix.
"""

from __future__ import annotations

from core.errors import MahavishnuError


class SshError(MahavishnuError):
    """An SSH host could not be registered or reached."""


class HostKeyError(SshError):
    """A host key to pin is not an OpenSSH public key line."""


class HostKeyMismatch(SshError):
    """The host presented a key other than the pinned one; `.pinned` and `.seen` are SHA256 fingerprints."""

    def __init__(self, message: str, *, pinned: str, seen: str) -> None:
        self.pinned = pinned
        self.seen = seen
        super().__init__(message)


class SshConnectFailed(SshError):
    """No SSH session could be set up: connection refused, host unreachable, or no answer in time."""


class SshAuthFailed(SshError):
    """The host refused the gateway's credentials."""


class SshCredentialsError(SshError):
    """The identity file or its passphrase file cannot be read or decrypted."""


class SshTransferFailed(SshError):
    """A file could not be copied to the host over SFTP."""
