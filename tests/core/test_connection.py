"""Opening a connection: the first connection's deadline holds even when the cancelled attempt will not end,
and a connection that never came up leaves no socket behind."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from core.errors import StoreUnavailable
from core.store.connection import _within, connect
from tests.harness import Mesh, free_port
from tests.proxy import Proxy


async def test_an_attempt_that_swallows_one_cancel_is_asked_again_and_ends() -> None:
    # What agents were seen doing under a reconnect storm: a cancelled nats-py connect that
    # went on (asyncio.wait_for can swallow a cancel on Python 3.11), so wait_for never returned.
    async def swallows_once() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.Event().wait()  # keeps waiting after its first cancel

    attempt = asyncio.ensure_future(swallows_once())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_within(attempt, 0.05, grace=5), 10)  # the outer deadline only guards the test
    assert attempt.cancelled()


async def test_an_attempt_that_never_ends_is_left_to_itself_at_its_deadline() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # swallows every cancel

    attempt = asyncio.ensure_future(stubborn())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_within(attempt, 0.05, grace=0.1), 10)
    assert not attempt.done()
    release.set()
    await attempt


async def test_an_attempt_that_ends_in_time_gives_its_result() -> None:
    async def answer() -> str:
        return "connected"

    assert await _within(asyncio.ensure_future(answer()), 5) == "connected"


async def test_a_connection_whose_server_never_speaks_is_closed_when_connect_gives_up(mesh: Mesh) -> None:
    """nats-py's connect leaves its TCP socket open when the server's INFO does not come in time; ours closes it."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))  # accepts the connection and never says INFO

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        silent = dataclasses.replace(mesh.identity, url=f"tls://127.0.0.1:{port}")
        with pytest.raises(StoreUnavailable):
            await connect(silent, name="tests-mute", connect_timeout=0.5, reconnect=False)
        reader, writer = await asyncio.wait_for(accepted.get(), 5)
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # the client closed its end
        finally:
            writer.close()
            await writer.wait_closed()


async def test_a_reconnect_attempt_that_fails_closes_its_socket_before_the_next(mesh: Mesh) -> None:
    """nats-py's reconnect loop opens a new socket for each attempt and leaves the one of an attempt
    that failed after its TCP connect (no INFO in time) open; ours closes it before the next attempt."""
    proxy = Proxy(free_port(), int(mesh.identity.url.rsplit(":", 1)[1]))
    muted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await muted.put((reader, writer))  # a reconnect attempt: accepted and never answered

    await proxy.start()
    through = dataclasses.replace(mesh.identity, url=f"tls://127.0.0.1:{proxy.port}")
    client = await connect(through, name="tests-reconnect", connect_timeout=0.5, reconnect=True)
    opened: list[asyncio.StreamWriter] = []  # the mute server's ends
    try:
        await proxy.cut()  # the link drops: the client starts reconnecting, to a server that never speaks
        async with await asyncio.start_server(mute, "127.0.0.1", proxy.port, reuse_address=True):
            try:
                first_reader, first_writer = await asyncio.wait_for(muted.get(), 10)
                opened.append(first_writer)
                _, second_writer = await asyncio.wait_for(muted.get(), 10)  # the first attempt gave up
                opened.append(second_writer)
                # the client is still reconnecting, and the first attempt's socket is closed already
                assert await asyncio.wait_for(first_reader.read(), 5) == b""
            finally:
                for writer in opened:
                    writer.close()
                    await writer.wait_closed()
    finally:
        await client.close()
        await proxy.close()


async def test_abandoning_a_tls_connection_closes_the_socket_under_it_at_once(mesh: Mesh) -> None:
    """Closing the TLS layer alone leaves its socket open until the server says goodbye; a reconnect
    attempt replaces that socket's writer before then, and the writer warned, unclosed."""
    client = await connect(mesh.identity, name="tests-abandon", reconnect=False)
    try:
        bare = client._transport._bare_io_writer  # type: ignore[union-attr]  # nats-py's raw socket writer
        assert bare is not client._transport._io_writer  # type: ignore[union-attr]  # upgraded to TLS
        client.abandon()  # type: ignore[attr-defined]
        assert bare.transport.is_closing()
    finally:
        await client.close()
