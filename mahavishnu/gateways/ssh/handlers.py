"""The commands an SSH host knows, as agent-style handlers (edge.handlers.Handler) run by the gateway.

    ping   {}                                   open (or reuse) a connection and run `true`: the host is there
    exec   {"argv": ["uname", "-a"]}            run an allowlisted command line, output capped
           {"command": "uname -a"}

Being handlers, they go through the agent's own admission and execution
(edge.lifecycle): unknown names and bad arguments are rejected before anything
connects, and the command's timeout (never longer than [ssh] command_timeout) is
enforced the same way. Any SSH problem becomes a CommandError with a message an
operator can act on; a host key mismatch is also handed to `on_mismatch` (the audit).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from edge.builtin import only
from edge.errors import CommandError
from edge.handlers import Handler, HandlerContext
from mahavishnu.gateways.ssh.errors import HostKeyMismatch, SshError
from mahavishnu.gateways.ssh.hosts import exec_line, exec_result, last_line, parse_host_key
from mahavishnu.gateways.ssh.pool import Connection, SshPool, SshTarget, run_command

OnMismatch = Callable[[SshTarget, HostKeyMismatch], Awaitable[None]]


@dataclass(frozen=True)
class SshHost:
    """What every handler of one host needs: where it is, the pool, the limits, and whom to tell of a mismatch."""

    target: SshTarget
    pool: SshPool
    command_timeout: float
    max_output: int
    on_mismatch: OnMismatch

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Connection]:
        """A pooled connection; SSH errors (connecting, or during the command) become CommandError."""
        try:
            async with self.pool.session(self.target) as conn:
                yield conn
        except HostKeyMismatch as exc:
            await self.on_mismatch(self.target, exc)
            raise CommandError(str(exc)) from exc
        except SshError as exc:
            raise CommandError(str(exc)) from exc


@dataclass(frozen=True)
class SshPing:
    """Answers {"pong": true, "endpoint", "host_key", "ms"} once the host ran `true` over a pinned connection."""

    host: SshHost
    name: str = "ping"

    @property
    def timeout_s(self) -> float:
        return self.host.command_timeout

    def validate(self, args: dict[str, Any]) -> None:
        only(self.name, args, ())

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        started = time.monotonic()
        async with self.host.session() as conn:
            code, _, err, _ = await run_command(conn, "true", cap=1024)
        if code != 0:
            raise CommandError(f"the host answered but `true` exited with code {code}{last_line(err)}")
        return {
            "pong": True,
            "endpoint": self.host.target.name,
            "host_key": parse_host_key(self.host.target.host_key).fingerprint,
            "ms": round((time.monotonic() - started) * 1000, 1),
        }


@dataclass(frozen=True)
class SshExec:
    """Runs one command line of the host's allowlist; answers like the agent's exec (exit code, capped output)."""

    host: SshHost
    allowlist: frozenset[str]
    name: str = "exec"

    @property
    def timeout_s(self) -> float:
        return self.host.command_timeout

    def validate(self, args: dict[str, Any]) -> None:
        exec_line(args, self.allowlist)

    async def run(self, args: dict[str, Any], context: HandlerContext) -> Any:
        line = exec_line(args, self.allowlist)
        async with self.host.session() as conn:
            code, out, err, signal = await run_command(conn, line, cap=self.host.max_output)
        if signal:
            raise CommandError(f"{line.split()[0]} was killed by signal {signal} on the host{last_line(err)}")
        if code != 0:
            raise CommandError(f"{line.split()[0]} exited with code {code}{last_line(err)}")
        return exec_result(code, out, err)


def handlers_for(host: SshHost, allowlist: list[str]) -> list[Handler]:
    return [SshPing(host), SshExec(host, frozenset(allowlist))]
