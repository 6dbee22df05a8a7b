"""The remote terminal's rules on the control side (pure): who may open, who may type, when a session ends.

A session belongs to the connection that opened it: the server names that connection in
the Nats-Request-Info header of every request that crossed the OPS -> MESH import
(server, account, client id and connect time; parsed by core.requester), so the identity
comes from the connection, never from the request body. Only that connection may type, read or close;
another connection of the same person is someone else at another keyboard.

A session ends for exactly one reason, the first of:
    exited              the shell exited by itself
    closed              its owner closed it
    idle_timeout        no keystroke for `idle_s`
    max_duration        open for `max_s`
    owner_disconnected  the owner's connection closed (the server's DISCONNECT event)
    owner_silent        no request from the owner for `owner_silence_s` (a connection that hangs)
    device_lost         the agent no longer has the session, or no agent answers for the device
    mesh_stopping       `up` is stopping
    broker_restarted    the broker that opened it crashed; the next one ended it (journal.py)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.requester import Requester
from core.units import format_duration
from mahavishnu.gateways.shell.errors import ShellError

SHELL_ROLES = frozenset({"admin", "operator"})

REASONS = (
    "exited",
    "closed",
    "idle_timeout",
    "max_duration",
    "owner_disconnected",
    "owner_silent",
    "device_lost",
    "mesh_stopping",
    "broker_restarted",
    "failed",
)


@dataclass(frozen=True)
class Connection:
    """One client connection to one server, as the server names it (its client ids restart with the server)."""

    server: str
    account: str
    cid: int
    start: str

    def __str__(self) -> str:
        return f"{self.server}/{self.account}/{self.cid}"


@dataclass(frozen=True)
class Limits:
    """How long a session may live: without keystrokes, in all, and without a request from its owner."""

    idle_s: float = 900.0
    max_s: float = 1800.0
    owner_silence_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("idle_s", "max_s", "owner_silence_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"shell limit {name} must be more than 0 seconds, got {getattr(self, name)}")


@dataclass(frozen=True)
class Clock:
    """A session's times, in monotonic seconds."""

    opened: float
    last_input: float
    last_seen: float  # the owner's last request of any kind


def connection_of(requester: Requester) -> Connection:
    """The connection a request came through, as its Nats-Request-Info header names it (core.requester)."""
    return Connection(server=requester.server, account=requester.account, cid=requester.cid, start=requester.start)


def disconnected(advisory: dict[str, Any]) -> Connection | None:
    """The connection a $SYS DISCONNECT event is about (the server is named beside the client there)."""
    server = advisory.get("server")
    client = advisory.get("client")
    if not isinstance(client, dict) or not isinstance(server, dict):
        return None
    cid, account, name = client.get("id"), client.get("acc"), server.get("name")
    if not isinstance(cid, int) or not isinstance(account, str) or not isinstance(name, str):
        return None
    return Connection(server=name, account=account, cid=cid, start=str(client.get("start", "")))


def same_connection(a: Connection, b: Connection) -> bool:
    """Whether two names are of one connection. A DISCONNECT may omit the start; the rest must match."""
    core_same = (a.server, a.account, a.cid) == (b.server, b.account, b.cid)
    return core_same and (not a.start or not b.start or a.start == b.start)


def may_open(role: str) -> bool:
    return role in SHELL_ROLES


def refusal_for_role(identity: str, role: str) -> ShellError:
    return ShellError(403, f"{identity} ({role}) may not open a remote terminal: only the admin and operator roles may")


def due(clock: Clock, now: float, limits: Limits) -> str | None:
    """The limit a session has reached at `now`, if any: idle_timeout, max_duration or owner_silent."""
    if now - clock.opened >= limits.max_s:
        return "max_duration"
    if now - clock.last_input >= limits.idle_s:
        return "idle_timeout"
    if now - clock.last_seen >= limits.owner_silence_s:
        return "owner_silent"
    return None


def next_check(clock: Clock, limits: Limits) -> float:
    """The monotonic time at which `due` can first say something new."""
    return min(clock.opened + limits.max_s, clock.last_input + limits.idle_s, clock.last_seen + limits.owner_silence_s)


def explain(reason: str, limits: Limits, exit_code: int | None = None) -> str:
    """What the operator's terminal says when a session ends."""
    messages = {
        "exited": f"the shell exited (status {exit_code})" if exit_code is not None else "the shell exited",
        "closed": "closed by its owner",
        "idle_timeout": f"closed after {format_duration(limits.idle_s)} without a keystroke (idle timeout)",
        "max_duration": f"closed after {format_duration(limits.max_s)} (the maximum duration of a session)",
        "owner_disconnected": "closed: the connection that opened it went away",
        "owner_silent": "closed: no word from the connection that opened it for "
        f"{format_duration(limits.owner_silence_s)}",
        "device_lost": "closed: the device's agent went away or lost the session",
        "mesh_stopping": "closed: the mesh is stopping",
        "broker_restarted": "closed: the mesh's terminal broker restarted (up stopped without closing it), "
        "and a session does not outlive its broker; open a new one",
        "failed": "closed: the session failed on the device",
    }
    return messages.get(reason, f"closed ({reason})")
