"""A service of `up` on a thread of its own, with its own event loop and connections.

A reconnecting fleet asks the server to authorize thousands of connections at once, and
the server gives each only a few seconds (nats-py even gives up after 2: the server's
first PING). On `up`'s own event loop those answers would wait behind the read models,
the queries and the audit of the very same connections; here they wait for nothing but
each other. `up` runs the identity service this way; the test meshes run theirs (and
their provisioning service) the same way (tests/harness.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from nats.aio.client import Client

from core.store import Identity, connect
from mahavishnu.identity.service import IdentityService, start_identity
from mahavishnu.runtime.home import Home

START_TIMEOUT_S = 30.0

S = TypeVar("S")


class ServiceThread(Generic[S]):
    """Runs `open()` on a loop of its own; `start` returns once it is open, `stop` once `close` has run.

    `open` makes the service (and the connections it owns); `close` stops it and closes them.
    """

    def __init__(self, name: str, open: Callable[[], Awaitable[S]], close: Callable[[S], Awaitable[None]]) -> None:
        self._open, self._close = open, close
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.service: S | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> S:
        """Start the service (blocking); re-raises what kept it from starting (StoreUnavailable...)."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"{self._thread.name} did not start within {START_TIMEOUT_S:g} s")
        if self._error is not None:
            raise self._error
        assert self.service is not None
        return self.service

    def stop(self) -> None:
        """Stop the service (blocking); harmless when it never started or stopped already."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(START_TIMEOUT_S)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            try:
                self._finish_tasks()
            finally:
                self._loop.close()

    def _finish_tasks(self) -> None:
        """Cancel what is still running on the loop and let it end, as asyncio.run does before it closes a loop.

        A client closed while it reconnects (its server gone) leaves its reconnect task cancelled
        but not yet ended; closing the loop then destroyed it pending, and asyncio said so in an
        error line after up's own last words (tests/mahavishnu/runtime/test_supervision.py).
        """
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        if pending:
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.service = await self._open()
        except BaseException as exc:  # handed to the thread waiting in start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self._close(self.service)


class IdentityThread(ServiceThread[IdentityService]):
    """The identity service (auth callout and cut-off) with connections of its own, as control and system."""

    def __init__(self, home: Home, control: Identity, system: Identity, *, servers: int = 1) -> None:
        connections: list[Client] = []

        async def open_() -> IdentityService:
            nc = await connect(control, name="mahavishnu-identity")
            connections.append(nc)
            system_nc = await connect(system, name="mahavishnu-identity-system")
            connections.append(system_nc)
            return await start_identity(nc, system_nc, home, servers=servers)

        async def close(service: IdentityService) -> None:
            await service.stop()
            for client in reversed(connections):
                await client.close()

        super().__init__("identity-service", open_, close)
