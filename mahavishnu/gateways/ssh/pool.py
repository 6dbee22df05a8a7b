"""The SSH I/O of the gateway, on asyncssh: pinned-key connections, a pool per host, one command run.

    pool = SshPool(max_per_host=4, connect_timeout=10, idle_timeout=60)
    async with pool.session(target) as conn:          # reuses an idle connection, or opens one
        exit_code, out, err = await run_command(conn, "uname -a", cap=65536)

Host keys are pinned, never learned: a connection trusts exactly the key registered for
the host (known_hosts is that one key, so the key exchange also asks the host for that
key type), and a host presenting any other key is refused with HostKeyMismatch naming
both fingerprints, before authentication. Nothing from ~/.ssh/known_hosts or
~/.ssh/config is used. Credentials are the target's identity file (decrypted with its
passphrase file, if any) or else the SSH agent and default keys of the user running
`up`; neither keys nor passphrases are ever logged or put in an error message.

asyncssh's and the socket layer's errors become mahavishnu.gateways.ssh.errors here, and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mahavishnu.gateways.ssh.errors import (
    HostKeyMismatch,
    SshAuthFailed,
    SshConnectFailed,
    SshCredentialsError,
    SshTransferFailed,
)
from mahavishnu.gateways.ssh.hosts import CappedOutput, HostKey, fingerprint, mismatch_message, parse_host_key
from mahavishnu.gateways.ssh.metrics import SshMetrics, connection_outcome

# asyncssh names cryptography's DSA types at import (it still reads ssh-dss keys), which
# cryptography 47+ deprecates with a warning on every start of `up`. Silence only that
# warning from those two modules; the same filter is in pyproject.toml for the tests.
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh\.crypto\.(misc|dsa)")

import asyncssh  # noqa: E402  (after the filter above)

log = logging.getLogger("mahavishnu.ssh")
# asyncssh logs every connection and channel at INFO; keep the gateway's log about the gateway.
logging.getLogger("asyncssh").setLevel(logging.WARNING)

_CHUNK = 64 * 1024
KILL_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class SshTarget:
    """Where and as whom a device's commands run, with its pinned key and where its credentials are."""

    device_id: str
    host: str
    port: int
    user: str
    host_key: str  # the pinned OpenSSH public key line
    identity_file: Path | None = None  # None: the SSH agent / default keys of the user running up
    passphrase_file: Path | None = None

    @property
    def endpoint(self) -> tuple[str, int]:
        """What the per-host connection limit counts by."""
        return (self.host, self.port)

    @property
    def name(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


Connection = asyncssh.SSHClientConnection
Connector = Callable[[SshTarget, float], Coroutine[Any, Any, Connection]]


class _PinningClient(asyncssh.SSHClient):
    """Remembers the key a host presented when it is not the pinned one (asyncssh asks only then)."""

    def __init__(self) -> None:
        self.seen: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.seen = key
        return False


def load_identity(identity_file: Path, passphrase_file: Path | None = None) -> asyncssh.SSHKey:
    """The private key in `identity_file`, decrypted with the passphrase in `passphrase_file`.

    SshCredentialsError naming the file (never its content) when it cannot be read or decrypted.
    """
    passphrase: str | None = None
    if passphrase_file is not None:
        try:
            passphrase = passphrase_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise SshCredentialsError(
                f"cannot read the passphrase file {passphrase_file}: {exc.strerror or exc}; check it exists and "
                "is readable by the user running the gateway"
            ) from None
    try:
        return asyncssh.read_private_key(identity_file, passphrase)
    except OSError as exc:
        raise SshCredentialsError(
            f"cannot read the identity file {identity_file}: {exc.strerror or exc}; check the path and permissions"
        ) from None
    except asyncssh.KeyEncryptionError:
        hint = "the passphrase file's passphrase does not open it" if passphrase else "it is encrypted: pass "
        raise SshCredentialsError(
            f"cannot decrypt the identity file {identity_file}: "
            + (hint if passphrase else hint + "--passphrase-file, or load it into an SSH agent")
        ) from None
    except asyncssh.KeyImportError:
        raise SshCredentialsError(
            f"the identity file {identity_file} is not a private key asyncssh can read (OpenSSH, PEM or PKCS#8)"
        ) from None


async def connect(target: SshTarget, timeout: float) -> Connection:
    """An authenticated connection to `target` whose host key is the pinned one.

    HostKeyMismatch (both fingerprints), SshConnectFailed (refused, unreachable, no SSH
    session within `timeout`), SshAuthFailed, SshCredentialsError.
    """
    pinned = parse_host_key(target.host_key, origin=f"the pinned key of {target.device_id}")
    if target.identity_file is not None:
        key = await asyncio.to_thread(load_identity, target.identity_file, target.passphrase_file)
        credentials: dict[str, Any] = {"client_keys": [key], "agent_path": None}
    else:
        credentials = {}  # asyncssh's defaults: the agent at $SSH_AUTH_SOCK, then ~/.ssh's default keys
    client = _PinningClient()
    try:
        async with asyncio.timeout(timeout):
            conn, _ = await asyncssh.create_connection(
                lambda: client,
                target.host,
                target.port,
                username=target.user,
                known_hosts=([asyncssh.import_public_key(pinned.line)], [], []),
                config=[],  # never ~/.ssh/config: what a host is, is what was registered
                connect_timeout=timeout,
                keepalive_interval=30,
                **credentials,
            )
    except asyncssh.HostKeyNotVerifiable as exc:
        if client.seen is not None:
            seen = fingerprint(client.seen.public_data)
            raise HostKeyMismatch(
                mismatch_message(target.device_id, target.host, target.port, pinned=pinned.fingerprint, seen=seen),
                pinned=pinned.fingerprint,
                seen=seen,
            ) from exc
        raise SshConnectFailed(f"{target.name}: the host key could not be verified ({exc.reason})") from exc
    except asyncssh.KeyExchangeFailed as exc:
        raise SshConnectFailed(
            f"{target.name}: key exchange failed ({exc.reason}); the pinned key is {pinned.algorithm} "
            f"{pinned.fingerprint}: does the host still have a key of that type?"
        ) from exc
    except asyncssh.PermissionDenied as exc:
        how = f"the identity file {target.identity_file}" if target.identity_file else "the SSH agent's keys"
        raise SshAuthFailed(
            f"{target.name} refused {how} ({exc.reason}); add its public key to ~{target.user}/.ssh/authorized_keys "
            "on the host, or register the host with another --identity-file"
        ) from exc
    except TimeoutError as exc:
        raise SshConnectFailed(
            f"no SSH session with {target.name} within {timeout:g} s ([ssh] connect_timeout): the host is down, "
            "filtered or not an SSH server; check host and port"
        ) from exc
    except OSError as exc:
        raise SshConnectFailed(f"cannot connect to {target.name}: {exc.strerror or exc}; check host and port") from exc
    except asyncssh.Error as exc:
        raise SshConnectFailed(f"SSH with {target.name} failed: {exc.reason}") from exc
    log.info("ssh connected", extra={"device": target.device_id, "endpoint": target.name})
    return conn


async def fetch_host_key(host: str, port: int, *, timeout: float) -> HostKey:
    """The host key `host:port` presents now, unverified: only for trust on first use, asked for explicitly."""
    try:
        async with asyncio.timeout(timeout):
            key = await asyncssh.get_server_host_key(host, port, config=[])
    except TimeoutError as exc:
        raise SshConnectFailed(f"no SSH server answered on {host}:{port} within {timeout:g} s") from exc
    except OSError as exc:
        raise SshConnectFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    except asyncssh.Error as exc:
        raise SshConnectFailed(f"SSH with {host}:{port} failed: {exc.reason}") from exc
    if key is None:
        raise SshConnectFailed(f"{host}:{port} presented no host key")
    return HostKey(key.algorithm.decode(), key.public_data)


async def run_command(conn: Connection, line: str, *, cap: int) -> tuple[int, CappedOutput, CappedOutput, str]:
    """Run one command line on `conn`: (exit code, stdout, stderr, signal name or "").

    Keeps `cap` bytes of each stream and reads on past it, so the remote side never
    blocks on a full window. Cancelled (the command's timeout), it kills the command's
    process group on the host and closes the channel. SshConnectFailed when the
    connection breaks.

    Why the wrapper (`echo $$; exec LINE`, which needs a POSIX login shell on the host):
    sshd runs each command as the leader of a session of its own, so the first line names
    that process group. Closing the channel does not stop a command, and OpenSSH refuses
    the protocol's own "signal" request for root logins; `kill -KILL -- -PGID` over a
    second channel works for every account.
    """
    out, err = CappedOutput(cap), CappedOutput(cap)
    try:
        process = await conn.create_process(f"echo $$; exec {line}", encoding=None, stdin=asyncssh.DEVNULL)
    except (asyncssh.Error, OSError) as exc:
        raise SshConnectFailed(f"cannot start a command on the host: {_reason(exc)}") from exc
    group = ""
    try:
        first = await process.stdout.readline()
        group = first.strip().decode(errors="replace") if first.strip().isdigit() else ""
        await asyncio.gather(_drain(process.stdout, out), _drain(process.stderr, err))
        completed = await process.wait()
    except (asyncssh.Error, OSError) as exc:
        raise SshConnectFailed(f"the SSH connection broke during the command: {_reason(exc)}") from exc
    finally:
        if process.exit_status is None and process.exit_signal is None:  # cancelled: stop it on the host
            process.close()
            if group:
                await asyncio.shield(_kill_group(conn, group))
    signal = completed.exit_signal[0] if completed.exit_signal else ""
    code = completed.exit_status if completed.exit_status is not None else -1
    return code, out, err, signal


async def upload(conn: Connection, local: Path, remote: str) -> None:
    """Copy the file `local` to the path `remote` on the host over SFTP, creating its folder.

    SshTransferFailed when the host offers no SFTP, the folder cannot be made or written,
    or the connection breaks; a cut copy may leave a partial file at `remote`.
    """
    folder = remote.rsplit("/", 1)[0] or "/"
    try:
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs(folder, exist_ok=True)
            await sftp.put(str(local), remote)
    except asyncssh.SFTPError as exc:
        raise SshTransferFailed(
            f"cannot copy {local.name} to {remote} on the host ({exc.reason}); check that the folder can be "
            "created and written by the user the gateway logs in as"
        ) from exc
    except (asyncssh.Error, OSError) as exc:
        raise SshTransferFailed(
            f"copying {local.name} to the host over SFTP failed ({_reason(exc)}); check that its sshd offers "
            "the sftp subsystem (Subsystem sftp ... in sshd_config)"
        ) from exc


async def _kill_group(conn: Connection, group: str) -> None:
    """SIGKILL a command's process group on the host, best effort and briefly: the timeout is already reported."""
    with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
        async with asyncio.timeout(KILL_TIMEOUT_S):
            await conn.run(f"kill -KILL -- -{group} 2>/dev/null || kill -KILL {group} 2>/dev/null", check=False)


async def _drain(stream: asyncssh.SSHReader[bytes], into: CappedOutput) -> None:
    while chunk := await stream.read(_CHUNK):
        into.add(chunk)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", "") or exc) or type(exc).__name__


@dataclass
class _Idle:
    target: SshTarget
    conn: Connection
    since: float


@dataclass
class PoolStats:
    """What the pool did per host:port: connections opened in all, and the most open at once."""

    opened: Counter[tuple[str, int]] = field(default_factory=Counter)
    peak: Counter[tuple[str, int]] = field(default_factory=Counter)


class SshPool:
    """Connections per host:port, at most `max_per_host` open at once (idle, busy or connecting).

    A session takes an idle connection to the same target or opens one; at the limit it
    closes an idle connection to another target of that host, or waits for one to come
    back. Connections idle longer than `idle_timeout` are closed by `reap()`. With `metrics`,
    each connection attempt is counted by outcome and the open connections are exported.
    """

    def __init__(
        self,
        *,
        max_per_host: int,
        connect_timeout: float,
        idle_timeout: float,
        connector: Connector = connect,
        metrics: SshMetrics | None = None,
    ) -> None:
        self.max_per_host = max_per_host
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.stats = PoolStats()
        self.metrics = metrics
        self._connector = connector
        self._open: Counter[tuple[str, int]] = Counter()
        self._idle: dict[tuple[str, int], list[_Idle]] = {}
        self._changed = asyncio.Condition()
        self._closed = False
        if metrics is not None:
            metrics.count_open(self.open_total)

    def open_count(self, endpoint: tuple[str, int]) -> int:
        return self._open[endpoint]

    def open_total(self) -> int:
        """Connections open (or being opened) to every host."""
        return sum(self._open.values())

    @contextlib.asynccontextmanager
    async def session(self, target: SshTarget) -> AsyncIterator[Connection]:
        """A connection to `target` for one command; it goes back to the pool unless it broke."""
        conn = await self._acquire(target)
        try:
            yield conn
        finally:
            await self._release(target, conn)

    async def _acquire(self, target: SshTarget) -> Connection:
        endpoint = target.endpoint
        async with self._changed:
            while True:
                idle = self._idle.setdefault(endpoint, [])
                for item in list(idle):
                    if item.conn.is_closed():
                        idle.remove(item)
                        self._open[endpoint] -= 1
                    elif item.target == target:
                        idle.remove(item)
                        return item.conn
                if self._open[endpoint] < self.max_per_host:
                    self._open[endpoint] += 1  # counted while connecting, so the limit holds
                    break
                if idle:  # full of idle connections to other targets on this host: make room
                    spare = idle.pop(0)
                    spare.conn.close()
                    self._open[endpoint] -= 1
                    continue
                await self._changed.wait()
        try:
            conn = await self._connector(target, self.connect_timeout)
        except BaseException as exc:
            if self.metrics is not None and isinstance(exc, Exception):  # a cancelled attempt is no outcome
                self.metrics.connections.labels(connection_outcome(exc)).inc()
            async with self._changed:
                self._open[endpoint] -= 1
                self._changed.notify_all()
            raise
        if self.metrics is not None:
            self.metrics.connections.labels(connection_outcome(None)).inc()
        self.stats.opened[endpoint] += 1
        self.stats.peak[endpoint] = max(self.stats.peak[endpoint], self._open[endpoint])
        return conn

    async def _release(self, target: SshTarget, conn: Connection) -> None:
        async with self._changed:
            if self._closed or conn.is_closed():
                conn.close()
                self._open[target.endpoint] -= 1
            else:
                self._idle.setdefault(target.endpoint, []).append(_Idle(target, conn, time.monotonic()))
            self._changed.notify_all()

    async def reap(self, *, now: float | None = None) -> int:
        """Close the connections idle longer than idle_timeout; returns how many."""
        now = time.monotonic() if now is None else now
        closed = 0
        async with self._changed:
            for endpoint, idle in self._idle.items():
                for item in list(idle):
                    if item.conn.is_closed() or now - item.since >= self.idle_timeout:
                        idle.remove(item)
                        item.conn.close()
                        self._open[endpoint] -= 1
                        closed += 1
            if closed:
                self._changed.notify_all()
        return closed

    async def close(self) -> None:
        """Close every idle connection (busy ones close when their session ends and finds the pool closed)."""
        async with self._changed:
            self._closed = True
            for endpoint, idle in self._idle.items():
                for item in idle:
                    item.conn.close()
                    self._open[endpoint] -= 1
                idle.clear()
