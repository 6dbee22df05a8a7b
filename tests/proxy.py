"""A real TCP proxy on asyncio, to cut and restore a link between two real processes."""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`target`. `cut()` closes the listener and every
    connection through it (as a lost network would); `restore()` listens on the same port again.

    `close()` returns once every connection the proxy ever made is closed, socket and all: one
    left to the garbage collector warns in whichever later test collects it (warnings are errors).
    """

    def __init__(self, port: int, target: int) -> None:
        self.port = port
        self.target = target
        self.connections = 0  # accepted so far: a restored link shows as a new one
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()  # the live ends, aborted by cut()
        self._opened: set[asyncio.StreamWriter] = set()  # every end, awaited by close()
        self._links: set[asyncio.Task[None]] = set()  # the tasks serving accepted connections

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = asyncio.current_task()
        assert link is not None
        self._links.add(link)
        self._writers.add(writer)  # registered before the upstream is opened: a cut meanwhile aborts it too
        self._opened.add(writer)
        try:
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
            except OSError:
                writer.close()
                return
            self._opened.add(upstream_writer)
            if writer not in self._writers:  # cut while the upstream was being opened: this link is gone too
                upstream_writer.transport.abort()
                return
            self.connections += 1
            self._writers.add(upstream_writer)
            await asyncio.gather(self._pump(reader, upstream_writer), self._pump(upstream_reader, writer))
        finally:
            self._links.discard(link)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no new connections
        for writer in list(self._writers):
            writer.transport.abort()  # a reset, not a polite close: the link is simply gone
        self._writers.clear()
        if server is not None:
            await server.wait_closed()  # after the aborts: it waits for the connections to end

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.cut()
        if self._links:  # each ends once its aborted ends are read to their end
            await asyncio.wait(set(self._links), timeout=10)
        for writer in list(self._opened):
            writer.transport.abort()  # closed already, or closed now
            with contextlib.suppress(Exception):
                await writer.wait_closed()  # its socket is closed once this returns
        self._opened.clear()
