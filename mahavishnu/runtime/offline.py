"""A control connection for commands that also work with the mesh stopped (backup, restore, rebuild).

`up` holds the read-model folder's lock while it runs. When it does, the command talks to
its server. When it does not, the command takes the lock itself (so `up` cannot start
beside it) and starts the mesh's servers for the occasion, from the same configuration,
and stops them when done: the single server, every node of `[server] cluster`, or, on a
node of a cluster across hosts, this host's node (the other hosts' `up --node` must run:
the streams are replicated on them). Nothing else appends meanwhile: no audit of
connections, no projections, so what the command sees is exactly the stored state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client

from core.config import Settings
from core.errors import MahavishnuError
from core.store import Identity, connect
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.server import NatsServer
from mahavishnu.runtime.streams import streams_of
from projections.service import FolderLock, ReadModelsBusy

STREAM_NOT_FOUND = 10059  # JSStreamNotFoundErr: a mesh never started has no streams yet, which is fine here
JETSTREAM_TIMEOUT_S = 60.0  # a cluster started for the occasion elects its JetStream leader within seconds


class OfflineError(MahavishnuError):
    """The servers started for the occasion did not come to serve JetStream."""


@dataclass(frozen=True)
class Connected:
    nc: Client
    up_running: bool  # False: servers of our own, and the read-model lock is ours until the block ends


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
        async with _servers(home, settings, name) as identity:
            nc = await connect(identity, name=name, reconnect=False)
            try:
                await _jetstream_answers(nc, [spec.name for spec in streams_of(settings)])
                yield Connected(nc, up_running=False)
            finally:
                await nc.close()
    finally:
        lock.release()


@contextlib.asynccontextmanager
async def _servers(home: Home, settings: Settings, name: str) -> AsyncIterator[Identity]:
    """Start the servers the state directory's mesh is made of; the identity that reaches them."""
    from mahavishnu.runtime.bundle import NODE_JSON  # the mesh's layouts: imported when the mesh is stopped

    if (home.root / NODE_JSON).is_file():
        from mahavishnu.runtime.bundle import prepare_node, read_node
        from mahavishnu.runtime.hostplan import node_settings

        node = read_node(home.root)  # the state directory is laid out like its bundle
        settings = node_settings(settings, node)
        prepare_node(home, settings, node)
        server = NatsServer(home.node_conf, name=f"{node.server_name}-{name}")
        await asyncio.to_thread(server.start)
        try:
            yield home.control_identity(settings)
        finally:
            await asyncio.to_thread(server.stop)
    elif settings.server.cluster:
        from mahavishnu.runtime.cluster import ClusterSupervisor, prepare_cluster
        from mahavishnu.runtime.supervisor import RestartPolicy

        cluster = ClusterSupervisor(prepare_cluster(home, settings), RestartPolicy(), mesh=settings.mesh.name)
        await cluster.start()
        try:
            yield home.control_identity(settings)
        finally:
            cluster.stopping()
            await cluster.stop()
    else:
        server = NatsServer(home.server_conf, name=f"{settings.mesh.name}-{name}")
        endpoints = await asyncio.to_thread(server.start)
        try:
            yield home.control_identity(settings, endpoints.port)
        finally:
            await asyncio.to_thread(server.stop)


async def _jetstream_answers(nc: Client, streams: list[str], timeout: float = JETSTREAM_TIMEOUT_S) -> None:
    """Wait until JetStream, and each of `streams` that exists, answers; OfflineError after `timeout`.

    Servers started a moment ago answer nothing until their metadata leader is elected, and
    a replicated stream nothing until its own group has elected a leader and its replicas
    have caught up with it (until then its leader may still change, and a read with it).
    """
    deadline = time.monotonic() + timeout
    for subject in ["$JS.API.INFO", *(f"$JS.API.STREAM.INFO.{name}" for name in streams)]:
        while True:
            try:
                reply = await nc.request(subject, b"", timeout=2)
                reason = _not_serving(json.loads(reply.data))
                if reason is None:
                    break
            except (TimeoutError, nats.errors.Error, ValueError) as exc:  # ValueError: not a JSON answer
                reason = repr(exc)
            if time.monotonic() >= deadline:
                raise OfflineError(
                    f"JetStream did not answer {subject} within {timeout:g} s ({reason}): in a cluster across "
                    "hosts, `up --node` must run on the other hosts"
                )
            await asyncio.sleep(0.25)  # retry interval while the cluster elects its leaders, bounded by the deadline


def _not_serving(answer: dict[str, Any]) -> str | None:
    """Why a JetStream API answer (INFO, STREAM.INFO) says it cannot serve yet, or None (pure)."""
    error = answer.get("error")
    if error is not None:
        return None if error.get("err_code") == STREAM_NOT_FOUND else str(error.get("description", error))
    cluster = answer.get("cluster")
    if cluster is None:
        return None
    if not cluster.get("leader"):
        return "the stream has no leader yet"
    behind = [r["name"] for r in cluster.get("replicas", []) if not r.get("offline") and not r.get("current")]
    return f"replicas catching up: {', '.join(behind)}" if behind else None
