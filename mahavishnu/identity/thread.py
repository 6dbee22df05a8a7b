"""The identity service on a thread of its own, with its own event loop and connections.

A reconnecting fleet asks the server to authorize thousands of connections at once, and
the server gives each only a few seconds (nats-py even gives up after 2: the server's
first PING). On `up`'s own event loop those answers would wait behind the read models,
the queries and the audit of the very same connections; here they wait for nothing but
each other. `up` runs one; the test meshes run one each (tests/harness.py).
"""

from __future__ import annotations

import asyncio
import threading

from core.store import Identity, connect
from mahavishnu.identity.service import IdentityService, start_identity
from mahavishnu.runtime.home import Home

START_TIMEOUT_S = 30.0


class IdentityThread:
    """Runs start_identity on its own loop; `start` returns once it answers, `stop` once it has stopped."""

    def __init__(self, home: Home, control: Identity, system: Identity, *, servers: int = 1) -> None:
        self._home, self._control, self._system, self._servers = home, control, system, servers
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.service: IdentityService | None = None
        self._thread = threading.Thread(target=self._run, name="identity-service", daemon=True)

    def start(self) -> None:
        """Start answering (blocking); re-raises what kept it from starting (StoreUnavailable...)."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError(f"the identity service did not start within {START_TIMEOUT_S:g} s")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Stop answering and close its connections (blocking); harmless when it never started."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(START_TIMEOUT_S)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            nc = await connect(self._control, name="mahavishnu-identity")
            system = await connect(self._system, name="mahavishnu-identity-system")
            self.service = await start_identity(nc, system, self._home, servers=self._servers)
        except BaseException as exc:  # handed to the thread waiting in start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.service.stop()
        await system.close()
        await nc.close()
