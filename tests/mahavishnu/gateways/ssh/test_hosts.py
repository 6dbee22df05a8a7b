"""The pure parts of SSH-managed hosts, and the pool's limit and reuse with a fake connector (no sockets)."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import asyncssh
import pytest

from core.config import load_config
from core.errors import ConfigError
from core.events import CommandAccepted
from edge.errors import InvalidArguments
from mahavishnu.gateways.ssh.errors import (
    HostKeyError,
    HostKeyMismatch,
    SshAuthFailed,
    SshConnectFailed,
    SshCredentialsError,
)
from mahavishnu.gateways.ssh.gateway import ACTOR, as_gateway
from mahavishnu.gateways.ssh.hosts import (
    CappedOutput,
    exec_line,
    exec_result,
    mismatch_message,
    normalize_allowlist,
    parse_host_key,
)
from mahavishnu.gateways.ssh.metrics import connection_outcome
from mahavishnu.gateways.ssh.pool import SshPool, SshTarget
from tests.mahavishnu.sshd import public_line
from tests.tools import tool

LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1wPPJd4mHj0pZSHcLHDuOEEdgFmRN7udLPt7yDtsjN"


def test_the_fingerprint_is_the_one_ssh_keygen_prints() -> None:
    assert parse_host_key(LINE + " root@host").fingerprint == "SHA256:UMW9y3r+doJwE7nMpNDEl52ugelWPSYjs3nJmqc0eis"
    key = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    assert parse_host_key(public_line(key)).fingerprint == key.get_fingerprint("sha256")


def test_ssh_keygen_prints_the_same_fingerprint(tmp_path: Path) -> None:
    pub = tmp_path / "k.pub"
    pub.write_text(LINE + "\n")
    keygen = tool("ssh-keygen")  # openssh-client
    printed = subprocess.run([keygen, "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    assert parse_host_key(LINE).fingerprint in printed


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "holds no OpenSSH public host key"),
        ("AAAAC3NzaC1lZDI1NTE5", "holds no OpenSSH public host key"),
        ("ssh-ed25519 not!base64", "not valid base64 key data"),
        ("ssh-rsa " + LINE.split()[1], "the key data is a ssh-ed25519 key, but the line says ssh-rsa"),
    ],
)
def test_a_malformed_host_key_is_refused_saying_why(text: str, problem: str) -> None:
    with pytest.raises(HostKeyError, match=problem):
        parse_host_key(text)


def test_a_known_hosts_line_gives_its_key() -> None:
    assert parse_host_key(f"[10.0.0.7]:2222 {LINE}").line == LINE


def test_the_mismatch_message_names_both_fingerprints_and_what_to_do() -> None:
    message = mismatch_message("web-1", "10.0.0.7", 22, pinned="SHA256:old", seen="SHA256:new")
    assert "pinned SHA256:old, seen SHA256:new" in message and "web-1 (10.0.0.7:22)" in message
    assert "mahavishnu device add-ssh web-1" in message


def test_exec_runs_only_allowlisted_lines_quoted_word_by_word() -> None:
    allow = normalize_allowlist(["uname  -a", "echo '$HOME'", "uname -a"])
    assert allow == ["uname -a", "echo '$HOME'"]
    assert exec_line({"argv": ["uname", "-a"]}, allow) == "uname -a"
    assert exec_line({"command": "'uname' -a"}, allow) == "uname -a"
    assert exec_line({"argv": ["echo", "$HOME"]}, allow) == "echo '$HOME'"  # no expansion on the host
    for args, problem in [
        ({"argv": ["uname", "-r"]}, "not in this host's exec allowlist"),
        ({"argv": ["uname; reboot"]}, "not in this host's exec allowlist"),
        ({}, "either 'argv'"),
        ({"argv": ["a"], "command": "a"}, "either 'argv'"),
        ({"argv": "uname -a"}, "non-empty list"),
        ({"command": "echo 'unbalanced"}, "cannot be split"),
    ]:
        with pytest.raises(InvalidArguments, match=problem):
            exec_line(args, allow)


def test_output_keeps_the_first_bytes_and_marks_the_rest() -> None:
    out = CappedOutput(5)
    for chunk in (b"abc", b"defgh", b"ij"):
        out.add(chunk)
    assert (bytes(out.kept), out.dropped, out.truncated) == (b"abcde", 5, True)
    assert out.text() == "abcde\n[truncated: 5 more bytes not kept, max_output is 5]"
    result = exec_result(0, out, CappedOutput(5))
    assert (result["stdout_truncated"], result["stderr_truncated"], result["stderr"]) == (True, False, "")


def test_lifecycle_events_name_the_gateway_as_actor() -> None:
    assert as_gateway([CommandAccepted(command_id="c", device_id="d", actor="d")])[0].actor == ACTOR


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False

    def is_closed(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def target(user: str = "ops", host: str = "h") -> SshTarget:
    return SshTarget("d", host, 22, user, LINE)


async def test_the_pool_waits_at_its_limit_reuses_and_reaps() -> None:
    opened: list[FakeConnection] = []

    async def connector(_: SshTarget, timeout: float) -> FakeConnection:
        opened.append(FakeConnection())
        return opened[-1]

    pool = SshPool(max_per_host=2, connect_timeout=1, idle_timeout=10, connector=connector)  # type: ignore[arg-type]
    busy = 0
    most = 0

    async def use() -> None:
        nonlocal busy, most
        async with pool.session(target()):
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.01)  # hold the connection while the others queue
            busy -= 1

    await asyncio.gather(*(use() for _ in range(10)))
    assert (len(opened), most, pool.stats.peak[("h", 22)], pool.open_count(("h", 22))) == (2, 2, 2, 2)
    async with pool.session(target(user="other")):  # another user at the limit: an idle connection makes room
        assert pool.open_count(("h", 22)) == 2 and sum(c.closed for c in opened) == 1
    assert await pool.reap(now=time.monotonic() + 3600) == 2
    assert pool.open_count(("h", 22)) == 0 and all(c.closed for c in opened)


async def test_a_failed_connect_gives_its_place_back() -> None:
    async def refused(_: SshTarget, timeout: float) -> FakeConnection:
        raise OSError("refused")

    pool = SshPool(max_per_host=1, connect_timeout=1, idle_timeout=10, connector=refused)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(OSError):
            async with pool.session(target()):
                pass
    assert pool.open_count(("h", 22)) == 0


def test_the_ssh_settings_are_checked_all_at_once() -> None:
    settings = load_config(None, {"MAHAVISHNU_SSH__MAX_OUTPUT": "1KB", "MAHAVISHNU_SSH__CONNECT_TIMEOUT": "2s"})
    assert (settings.ssh.max_output, settings.ssh.connect_timeout, settings.ssh.max_connections_per_host) == (
        1024,
        2,
        4,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"MAHAVISHNU_SSH__MAX_OUTPUT": "10MB", "MAHAVISHNU_SSH__MAX_CONNECTIONS_PER_HOST": "0"})
    assert sorted(p.split(": ", 1)[1].split(" ", 1)[0] for p in caught.value.problems) == [
        "ssh.max_connections_per_host",
        "ssh.max_output",
    ]
    assert "fit in one event" in str(caught.value)


def test_each_connection_attempt_has_one_outcome_label() -> None:
    assert connection_outcome(None) == "opened"
    assert connection_outcome(HostKeyMismatch("changed", pinned="SHA256:a", seen="SHA256:b")) == "host_key_refused"
    assert connection_outcome(SshAuthFailed("refused the key")) == "auth_failed"
    assert connection_outcome(SshConnectFailed("unreachable")) == "failed"
    assert connection_outcome(SshCredentialsError("cannot read it")) == "failed"
