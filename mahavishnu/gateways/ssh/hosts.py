"""Pure logic of SSH-managed hosts: pinned host keys and fingerprints, the exec allowlist, output capping.

Nothing here opens a socket or imports asyncssh; `mahavishnu.gateways.ssh.pool` does the I/O.

Fingerprints are written as ssh-keygen prints them: "SHA256:" and the unpadded
base64 of the SHA-256 of the key blob, so an operator can compare what an error names
with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import shlex
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from edge.errors import InvalidArguments
from mahavishnu.gateways.ssh.errors import HostKeyError

# The public key algorithms an OpenSSH host key line may start with.
KEY_ALGORITHMS = (
    "ssh-ed25519",
    "ssh-ed448",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)


@dataclass(frozen=True)
class HostKey:
    """A public host key: its algorithm and blob. `line` is what is pinned, `fingerprint` what people compare."""

    algorithm: str
    blob: bytes

    @property
    def line(self) -> str:
        return f"{self.algorithm} {base64.b64encode(self.blob).decode()}"

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.blob)


def fingerprint(blob: bytes) -> str:
    """The SHA256 fingerprint of a key blob, as `ssh-keygen -l` prints it (pure)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_host_key(text: str, *, origin: str = "--host-key") -> HostKey:
    """The host key in an OpenSSH public key line ("ssh-ed25519 AAAA... comment") or known_hosts line.

    HostKeyError naming `origin` when no token pair is an algorithm and its matching blob.
    """
    for line in text.splitlines() or [""]:
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word in KEY_ALGORITHMS:
                return _decode(word, words[i + 1], origin)
    raise HostKeyError(
        f"{origin} holds no OpenSSH public host key: give a line like 'ssh-ed25519 AAAA...' "
        "(the host's /etc/ssh/ssh_host_ed25519_key.pub, or `ssh-keyscan -t ed25519 HOST`)"
    )


def _decode(algorithm: str, encoded: str, origin: str) -> HostKey:
    try:
        blob = base64.b64decode(encoded, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        named = blob[4 : 4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError):
        raise HostKeyError(f"{origin}: the {algorithm} key is not valid base64 key data; copy the whole line") from None
    if named != algorithm:
        raise HostKeyError(f"{origin}: the key data is a {named or 'malformed'} key, but the line says {algorithm}")
    return HostKey(algorithm, blob)


def mismatch_message(device_id: str, host: str, port: int, *, pinned: str, seen: str) -> str:
    """What an operator reads when a host's key changed: both fingerprints, and what to do (pure)."""
    return (
        f"host key of {device_id} ({host}:{port}) does not match the pinned key: pinned {pinned}, seen {seen}; "
        "refused. If the host was re-keyed on purpose, check the new key out of band and register it again with "
        f"`mahavishnu device add-ssh {device_id} ... --host-key '<new key>'`; otherwise someone may be in between"
    )


# -- exec: which command lines may run ---------------------------------------------------


def normalize_line(line: str) -> str:
    """A command line in one canonical quoting (pure): `uname  -a` and `'uname' -a` are both `uname -a`.

    ValueError when it cannot be split (unbalanced quotes) or is empty.
    """
    words = shlex.split(line)
    if not words:
        raise ValueError("an empty command line")
    return shlex.join(words)


def normalize_allowlist(lines: Iterable[str]) -> list[str]:
    """The allowlist in canonical quoting, deduplicated, in order; ValueError naming a bad line."""
    seen: dict[str, None] = {}
    for line in lines:
        try:
            seen[normalize_line(line)] = None
        except ValueError as exc:
            raise ValueError(f"the allowed command line {line!r} cannot be used ({exc}); fix its quoting") from None
    return list(seen)


def exec_line(args: dict[str, Any], allowlist: Iterable[str]) -> str:
    """The command line `exec` runs for `args` ({"argv": [...]} or {"command": "..."}), if allowed (pure).

    The line is sent quoted word by word (shlex.join), so the remote shell expands
    nothing: `{"argv": ["echo", "$HOME"]}` prints `$HOME`. InvalidArguments (the
    command is rejected, never run) when the arguments are malformed or the line is not
    in the host's allowlist.
    """
    extra = sorted(set(args) - {"argv", "command"})
    if extra or ("argv" in args) == ("command" in args):
        raise InvalidArguments(
            "exec takes either 'argv' (a list of strings, e.g. [\"uname\", \"-a\"]) or 'command' (a command line)"
        )
    if "argv" in args:
        argv = args["argv"]
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
            raise InvalidArguments('exec \'argv\' must be a non-empty list of non-empty strings, e.g. ["uname", "-a"]')
        line = shlex.join(argv)
    else:
        command = args["command"]
        if not isinstance(command, str):
            raise InvalidArguments("exec 'command' must be a string, a command line of the host's allowlist")
        try:
            line = normalize_line(command)
        except ValueError as exc:
            raise InvalidArguments(f"the command line {command!r} cannot be split ({exc}); fix its quoting") from None
    if line not in set(allowlist):
        raise InvalidArguments(
            f"the command line {line!r} is not in this host's exec allowlist; register the host again with "
            f"`--allow {shlex.quote(line)}` to allow it"
        )
    return line


# -- output: keep the first bytes, count the rest ---------------------------------------


@dataclass
class CappedOutput:
    """The first `cap` bytes of a stream; what comes after is counted, not kept, so memory stays bounded."""

    cap: int
    kept: bytearray = field(default_factory=bytearray)
    dropped: int = 0

    def add(self, chunk: bytes) -> None:
        room = max(0, self.cap - len(self.kept))
        self.kept += chunk[:room]
        self.dropped += max(0, len(chunk) - room)

    @property
    def truncated(self) -> bool:
        return self.dropped > 0

    def text(self) -> str:
        """The kept bytes as text; a cut output ends with a marker saying how much was dropped."""
        text = bytes(self.kept).decode(errors="replace")
        if self.truncated:
            text += f"\n[truncated: {self.dropped} more bytes not kept, max_output is {self.cap}]"
        return text


def exec_result(exit_code: int, stdout: CappedOutput, stderr: CappedOutput) -> dict[str, Any]:
    """The result of a finished exec, shaped like the agent's exec result (pure)."""
    return {
        "exit_code": exit_code,
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "stdout_truncated": stdout.truncated,
        "stderr_truncated": stderr.truncated,
    }


def last_line(output: CappedOutput) -> str:
    """ ": <last line of the output>", clipped, or "" (pure): what a failure message quotes of stderr."""
    lines = bytes(output.kept).decode(errors="replace").strip().splitlines()
    return f": {lines[-1][:300]}" if lines else ""
