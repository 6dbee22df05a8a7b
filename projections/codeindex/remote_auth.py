"""Credentials for fetching a remote, from where git users keep them: the SSH agent, ~/.ssh keys, credential helpers.

libgit2 (under pygit2) looks for none of these by itself: without a credentials callback an
SSH remote fails with "authentication required but no callback set", and an HTTPS remote
that answers 401 fails, whatever is set up for `git fetch`. So `repo add`'s advice for
private remotes (an SSH key or agent, or a credential helper) holds only through this module.

A credential lives for one fetch: it is never stored, logged or put in a reason. libgit2
asks again after each refusal, so every source is offered once and then the fetch fails
with RemoteAuthFailed, which names the sources tried (never what they gave).
"""

from __future__ import annotations

import getpass
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pygit2
from pygit2.enums import CredentialType

from projections.codeindex.errors import RemoteAuthFailed

__all__ = [
    "FetchCredentials",
    "RemoteAuthFailed",
    "credential_request",
    "fill_credential",
    "key_pairs",
    "parse_credential",
]

# The private keys ssh(1) tries by default, in its order (ssh_config IdentityFile).
DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")
HELPER_TIMEOUT = 10.0  # seconds for `git credential fill`: a helper that hangs must not hold a poll slot


def credential_request(url: str, username: str | None) -> str:
    """What `git credential fill` reads for `url` (pure): git parses the URL into protocol, host and path itself."""
    lines = [f"url={url}"] + ([f"username={username}"] if username else [])
    return "\n".join(lines) + "\n\n"


def parse_credential(output: str) -> tuple[str, str] | None:
    """The user name and password in `git credential fill`'s answer (pure), or None when it has no password."""
    fields = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    if not fields.get("password"):
        return None
    return fields.get("username", ""), fields["password"]


def key_pairs(ssh_dir: Path) -> list[tuple[Path, Path]]:
    """The default private keys in `ssh_dir` that have their public half beside them (libssh2 needs both)."""
    pairs = [(ssh_dir / f"{name}.pub", ssh_dir / name) for name in DEFAULT_KEYS]
    return [(public, private) for public, private in pairs if private.is_file() and public.is_file()]


def fill_credential(url: str, username: str | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """Ask the configured git credential helpers (blocking); never a terminal prompt, the mesh has no terminal."""
    quiet = {**env, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}
    try:
        answer = subprocess.run(
            ["git", "credential", "fill"],
            input=credential_request(url, username),
            capture_output=True,
            text=True,
            env=quiet,
            timeout=HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):  # no git installed, or a helper that hangs: no credential
        return None
    return parse_credential(answer.stdout) if answer.returncode == 0 else None


def _local_user() -> str:
    """The user name ssh(1) would log in as when the URL names none; "git" when the process has no passwd entry."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "git"


class FetchCredentials(pygit2.RemoteCallbacks):
    """The credentials callback for one fetch: each source once, in the order git and ssh use them.

    SSH: the agent (SSH_AUTH_SOCK), then the default key files without a passphrase.
    HTTP(S): what `git credential fill` gives. Anything else, or all sources refused:
    RemoteAuthFailed, which pygit2 raises from `fetch`.
    """

    def __init__(self, *, env: Mapping[str, str] | None = None, ssh_dir: Path | None = None) -> None:
        super().__init__()
        self.env = dict(os.environ if env is None else env)
        self.ssh_dir = ssh_dir if ssh_dir is not None else Path(self.env.get("HOME", "~")).expanduser() / ".ssh"
        self._ssh_tried: list[str] = []
        self._ssh_left: list[tuple[str, pygit2.Keypair]] | None = None
        self._asked_helper = False

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.Username | pygit2.UserPass | pygit2.Keypair:
        if allowed_types & CredentialType.USERNAME:  # SSH asks for the user first when the URL names none
            return pygit2.Username(username_from_url or _local_user())
        if allowed_types & CredentialType.SSH_KEY:
            return self._next_key(url, username_from_url or _local_user())
        if allowed_types & CredentialType.USERPASS_PLAINTEXT:
            return self._from_helper(url, username_from_url)
        raise RemoteAuthFailed(f"{url} asks for credentials of a kind the poller cannot give ({allowed_types!r})")

    def _next_key(self, url: str, user: str) -> pygit2.Keypair:
        if self._ssh_left is None:
            self._ssh_left = []
            if self.env.get("SSH_AUTH_SOCK"):
                self._ssh_left.append(("the SSH agent", pygit2.KeypairFromAgent(user)))
            for public, private in key_pairs(self.ssh_dir):
                self._ssh_left.append((str(private), pygit2.Keypair(user, str(public), str(private), "")))
        if not self._ssh_left:
            tried = ", ".join(self._ssh_tried) or "no agent (SSH_AUTH_SOCK unset) and no key in " + str(self.ssh_dir)
            raise RemoteAuthFailed(
                f"{url} asks for credentials and refused every SSH key the poller has ({tried}) as {user!r}: "
                "load the key the remote accepts into the agent of the user the mesh runs as, or put it, "
                "without a passphrase, in ~/.ssh"
            )
        source, keypair = self._ssh_left.pop(0)
        self._ssh_tried.append(source)
        return keypair

    def _from_helper(self, url: str, username: str | None) -> pygit2.UserPass:
        if self._asked_helper:  # asked again: the remote refused what the helper gave
            raise RemoteAuthFailed(
                f"{url} asks for credentials and refused the user name and password a git credential helper gave: "
                "update the helper's entry"
            )
        self._asked_helper = True
        found = fill_credential(url, username, self.env)
        if found is None:
            raise RemoteAuthFailed(
                f"{url} asks for credentials and no git credential helper gave a user name and password: configure one "
                "(git config --global credential.helper ...) for the user the mesh runs as, or use an SSH URL"
            )
        return pygit2.UserPass(*found)
