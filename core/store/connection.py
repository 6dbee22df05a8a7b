"""Connecting to the mesh's NATS server with a client certificate (mutual TLS)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client

from core.errors import MahavishnuError, StoreUnavailable
from core.store.headers import parse_header_lines
from core.store.nats_errors import from_connect_error


@dataclass(frozen=True)
class Identity:
    """Where the server is and the TLS material a client proves itself with.

    `alternates` are the other nodes of a cluster: the client fails over to them when its
    server goes away (and nats-py also learns them from the servers' INFO).
    """

    url: str
    ca: Path
    cert: Path
    key: Path
    alternates: tuple[str, ...] = ()

    @property
    def servers(self) -> tuple[str, ...]:
        """Every URL to try, this one first."""
        return (self.url, *self.alternates)


def tls_context(identity: Identity) -> ssl.SSLContext:
    """A client TLS context that verifies the server against the mesh CA and presents our certificate.

    Raises MahavishnuError naming the file when one is missing or unreadable.
    """
    for label, path in (("CA certificate", identity.ca), ("certificate", identity.cert), ("key", identity.key)):
        if not path.is_file():
            raise MahavishnuError(f"{label} {path} does not exist: run `mahavishnu up` once to create the mesh")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(identity.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(identity.cert), str(identity.key))
    except (ssl.SSLError, ValueError) as exc:
        raise MahavishnuError(
            f"cannot load TLS material ({identity.cert}, {identity.key}, {identity.ca}): {exc.__class__.__name__}; "
            "the files are corrupt or do not belong together: reissue them"
        ) from exc
    return context


async def connect(
    identity: Identity,
    *,
    name: str,
    connect_timeout: float = 5.0,
    reconnect: bool = True,
    error_cb: Callable[[Exception], Awaitable[None]] | None = None,
    inbox_prefix: str | None = None,
    **callbacks: Any,
) -> Client:
    """Open a NATS connection; StoreUnavailable with the reason when the server cannot be reached or refuses us.

    A device passes its own `inbox_prefix` (core.subjects.device_inbox_prefix): the server lets
    it receive replies there and nowhere else. `callbacks` go to nats-py as they are
    (disconnected_cb, reconnected_cb, reconnect_to_server_handler...).
    """
    context = tls_context(identity)

    async def _quiet(_: Exception) -> None:
        return None

    # nats-py retries the first connection forever when reconnects are unlimited (and also
    # when they are 0), so the first connection gets its own deadline.
    attempt = asyncio.ensure_future(
        _open(
            servers=list(identity.servers),
            tls=context,
            name=name,
            connect_timeout=connect_timeout,
            allow_reconnect=reconnect,
            max_reconnect_attempts=-1 if reconnect else 1,
            reconnect_time_wait=0.5,
            error_cb=error_cb or _quiet,
            **({"inbox_prefix": inbox_prefix} if inbox_prefix else {}),
            **callbacks,
        )
    )
    try:
        client: Client = await _within(attempt, 2 * connect_timeout + 1)  # TimeoutError: unreachable
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        raise from_connect_error(exc, ", ".join(identity.servers), cert=identity.cert, ca=identity.ca) from exc
    if not client.is_connected:
        # nats-py takes the first line after its CONNECT for the server's answer. When the
        # server is slow to authorize us (its auth callout under a reconnecting fleet), its
        # first PING (sent 2 s after the TCP connection) comes first, and nats-py returns a
        # client that never becomes connected and never sends anything. Hand none out.
        await client.close()
        raise StoreUnavailable(
            f"the server at {identity.url} did not confirm the connection in time (it is busy authorizing "
            "others): retry"
        )
    return client


class MeshClient(Client):
    """nats-py's Client, reading header blocks with core.store.headers (a third to a half of nats-py's time)."""

    _parse_header_lines = staticmethod(parse_header_lines)

    def abandon(self) -> None:
        """Close the socket of a connection that never came up (or of an attempt that failed).

        nats-py's connect, with reconnects off, raises when the server's INFO does not come in
        time (a server that is starting, stopping or too busy) and leaves its TCP socket open:
        a test's garbage collector later found it, unclosed, in another test.
        """
        transport = self._transport
        if transport is None:
            return
        transport.close()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated
        # Past the TLS upgrade, that closes the TLS layer only, which then waits for the
        # server's goodbye before closing the socket under it; the next attempt drops that
        # socket's writer meanwhile, unclosed (seen in CI after a revoked device's refused
        # reconnect). We are leaving that server: close the socket now.
        bare = getattr(transport, "_bare_io_writer", None)
        if bare is not None and not bare.transport.is_closing():
            bare.transport.abort()

    async def _connect_to_server(self, s: Any) -> None:
        """Close the previous attempt's socket before opening the next one.

        nats-py reuses one transport for every attempt and overwrites its socket: when a
        reconnect attempt fails after its TCP connect (no INFO in time, a server stopping),
        that socket was dropped unclosed, and warned in whichever later test collected it.
        """
        self.abandon()  # a no-op on a closed socket: the loop closes a lost connection's first
        await super()._connect_to_server(s)


async def _open(**options: Any) -> Client:
    """nats.connect(), with our client class, closing what a failed attempt opened."""
    client = MeshClient()
    try:
        await client.connect(**options)
    except BaseException:
        client.abandon()
        raise
    return client


CANCELS = 10  # how often a timed-out attempt is asked to stop, within its grace


async def _within(attempt: asyncio.Future[Any], seconds: float, *, grace: float = 5.0) -> Any:
    """`attempt`'s result, or TimeoutError after `seconds`, without waiting for a cancelled attempt to end.

    asyncio.wait_for waits for the cancelled attempt to finish, and a cancelled nats-py
    connect does not always finish: under a reconnecting fleet, agents were seen stuck
    for good in wait_for, with no connection and no retry. The attempt is cancelled, again
    and again, for `grace` seconds, until it ends (closing its sockets, as it does as a
    rule); past that it is left to end on its own, and a client it opens late is closed.
    """
    try:
        done, _ = await asyncio.wait({attempt}, timeout=seconds)
    except asyncio.CancelledError:
        attempt.cancel()
        raise
    if done:
        return attempt.result()
    ended: set[asyncio.Future[Any]] = set()
    for _ in range(CANCELS):  # asyncio.wait_for inside nats-py can swallow a cancel (Python 3.11): ask again
        attempt.cancel()
        ended, _ = await asyncio.wait({attempt}, timeout=grace / CANCELS)  # its sockets closed, as a rule
        if ended:
            break
    if not ended:
        attempt.add_done_callback(_close_if_opened)
    elif not attempt.cancelled():
        _close_if_opened(attempt)
    raise TimeoutError(f"no answer within {seconds:g} s")


_CLOSING: set[asyncio.Future[None]] = set()  # late clients being closed: held until closed


def _close_if_opened(attempt: asyncio.Future[Any]) -> None:
    if attempt.cancelled() or attempt.exception() is not None:  # retrieved: nothing is left to log
        return
    client = attempt.result()
    if isinstance(client, Client) and not client.is_closed:
        closing = asyncio.ensure_future(client.close())
        _CLOSING.add(closing)
        closing.add_done_callback(_CLOSING.discard)
