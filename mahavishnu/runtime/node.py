"""`up --node BUNDLE` on a host other than the control host: its nats-server, supervised, and nothing else.

The mesh's services (identity, projections, queries, gateways) run on the control host's
node (ADR 0014); here `up` keeps the node's server alive as `up` keeps the single one,
records mesh.started and mesh.stopped for the node, and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from importlib.metadata import version

from core.config import Settings
from core.errors import MahavishnuError, StoreError
from core.events import MeshStarted, MeshStopped
from core.store import EventStore, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.hostplan import NodeSpec
from mahavishnu.runtime.streams import streams_of
from mahavishnu.runtime.up import STOP_STEP_S, close_client, start_servers, until_signal

log = logging.getLogger("mahavishnu.node")

RETRY_S = 0.5  # how often mesh.started is tried again until the control host's node has created the streams


async def run_node(
    home: Home, settings: Settings, node: NodeSpec, *, out: Callable[[str], None], stop: asyncio.Event
) -> int:
    """Run this host's node until `stop` is set; 0 on a clean stop, GaveUp when its server cannot be kept up."""
    supervisor = await start_servers(home, settings, out, node)
    watcher = asyncio.create_task(supervisor.watch(stop), name="supervisor")
    nc = None
    recording: asyncio.Task[None] | None = None
    try:
        nc = await connect(home.control_identity(settings), name=f"mahavishnu-up-{node.name}")
        store = EventStore(nc, streams_of(settings))
        recording = asyncio.create_task(_record_start(store, node), name="mesh-started")
        out(f"node {node.name} of mesh {node.mesh} is up: {node.url} (its services run on the control host's node)")
        out("  stop      Ctrl-C")
        await until_signal(stop, watcher)
        supervisor.stopping()
        recording.cancel()
        if supervisor.running and nc.is_connected:
            with contextlib.suppress(MahavishnuError, TimeoutError):
                stopped = MeshStopped(node=node.server_name, reason="signal", actor="control")
                await asyncio.wait_for(store.append(stopped), STOP_STEP_S)
        out("node stopped")
        return 0
    finally:
        if recording is not None:
            recording.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recording
        await close_client(nc)
        await supervisor.stop()
        if not watcher.done():
            await watcher


async def _record_start(store: EventStore, node: NodeSpec) -> None:
    """Append mesh.started for this node once the streams exist (the same event each try: appended once)."""
    started = MeshStarted(node=node.server_name, version=version("mahavishnu"), url=node.url, actor="control")
    while True:
        try:
            await store.append(started)
            return
        except StoreError as exc:
            log.info("waiting for the streams to record mesh.started", extra={"reason": str(exc)})
        await asyncio.sleep(RETRY_S)  # retry interval until the control host's node has created them
