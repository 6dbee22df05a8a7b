"""A control connection for commands that also work with the mesh stopped (backup, restore, rebuild).

`up` holds the read-model folder's lock while it runs. When it does, the command talks to
its server. When it does not, the command takes the lock itself (so `up` cannot start
beside it) and starts the mesh's nats-server for the occasion, from the same
configuration, and stops it when done. Nothing else appends meanwhile: no audit of
connections, no projections, so what the command sees is exactly the stored state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client

from core.config import Settings
from core.store import connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.server import NatsServer
from projections.service import FolderLock, ReadModelsBusy


@dataclass(frozen=True)
class Connected:
    nc: Client
    up_running: bool  # False: a server of our own, and the read-model lock is ours until the block ends


@contextlib.asynccontextmanager
async def control_connection(home: Home, settings: Settings, name: str) -> AsyncIterator[Connected]:
    lock = FolderLock(home.readmodels_dir)
    try:
        lock.acquire()
    except ReadModelsBusy:  # `up` runs: ask its server
        nc = await connect(home.control_identity(settings), name=name, reconnect=False)
        try:
            yield Connected(nc, up_running=True)
        finally:
            await nc.close()
        return
    try:
        server = NatsServer(home.server_conf, name=f"{settings.mesh.name}-{name}")
        endpoints = await asyncio.to_thread(server.start)
        try:
            nc = await connect(home.control_identity(settings, endpoints.port), name=name, reconnect=False)
            try:
                yield Connected(nc, up_running=False)
            finally:
                await nc.close()
        finally:
            await asyncio.to_thread(server.stop)
    finally:
        lock.release()
