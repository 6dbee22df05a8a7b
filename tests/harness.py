"""A real nats-server for tests: the mesh's own generated configuration, real mTLS, a free port.

Each `Mesh` is a state directory prepared exactly as `mahavishnu up` prepares one (CA,
certificates, encrypted JetStream), with the server asked for port -1 so it picks a free
port and tells us which in its log.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from core.config import Settings, load_config
from core.store import EventStore, Identity, connect
from mahavishnu.identity.provisioning import Limits, ProvisioningService
from mahavishnu.identity.service import start_provisioning
from mahavishnu.identity.thread import IdentityThread, ServiceThread
from mahavishnu.runtime.home import Home
from mahavishnu.runtime.provisioning import prepare
from mahavishnu.runtime.server import NatsServer


def provisioning_thread(
    home: Home, settings: Settings, port: int, limits: Limits
) -> ServiceThread[ProvisioningService]:
    """up's provisioning service for a test mesh (`up` runs it on its main loop), on a thread of its own.

    It creates the mesh's streams first: it reads the claims' events.
    """
    connections: list[Client] = []

    async def open_() -> ProvisioningService:
        nc = await connect(home.control_identity(settings, port), name="tests-provisioning")
        connections.append(nc)
        system = await connect(home.system_identity(settings, port), name="tests-provisioning-sys")
        connections.append(system)
        store = EventStore(nc)
        await store.ensure_streams()
        return await start_provisioning(store, system, home, settings, port=port, limits=limits)

    async def close(service: ProvisioningService) -> None:
        await service.stop()
        for client in reversed(connections):
            await client.close()

    thread = ServiceThread("provisioning-service", open_, close)
    thread.start()
    return thread


@dataclass
class Mesh:
    home: Home
    settings: Settings
    server: NatsServer
    identity: Identity
    identity_service: IdentityThread
    provisioning: ServiceThread[ProvisioningService] | None = None

    @property
    def port(self) -> int:
        assert self.server.endpoints is not None
        return self.server.endpoints.port

    @property
    def mqtt_port(self) -> int:
        """The MQTT listener's port, from the server's log (the mesh must be started with mqtt_port)."""
        for line in self.server.recent:
            found = re.search(r"Listening for MQTT clients on \S+:(\d+)", line)
            if found:
                return int(found.group(1))
        raise AssertionError("this mesh has no MQTT listener: start_mesh(..., mqtt_port=-1)")

    @property
    def leaf_port(self) -> int:
        assert self.server.endpoints is not None and self.server.endpoints.leaf_port is not None
        return self.server.endpoints.leaf_port

    def stop(self) -> None:
        if self.provisioning is not None:
            self.provisioning.stop()
        self.identity_service.stop()
        self.server.stop()


def start_mesh(
    root: Path,
    env: dict[str, str] | None = None,
    *,
    port: int = -1,
    leaf_port: int | None = None,
    mqtt_port: int = 0,
    provisioning: Limits | None = None,
) -> Mesh:
    """A prepared state directory and its server; `port` -1 lets the server pick (a fixed one survives restarts).

    `leaf_port` (-1: any free one) opens the leaf node listener for edge sites; `mqtt_port`
    -1 adds the MQTT listener on a free port (Mesh.mqtt_port), 0 none; `provisioning` runs
    up's provisioning service with these limits (Mesh.provisioning).
    """
    settings = load_config(None, env=env or {})
    home = Home(root)
    prepare(home, settings, port=port, monitor_port=0, leaf_port=leaf_port, mqtt_port=mqtt_port)
    server = NatsServer(home.server_conf, name=f"test-{root.name}")
    endpoints = server.start()
    identities = identity_thread(home, settings, endpoints.port)
    provisioner = provisioning_thread(home, settings, endpoints.port, provisioning) if provisioning else None
    return Mesh(home, settings, server, home.control_identity(settings, endpoints.port), identities, provisioner)


def identity_thread(home: Home, settings: Settings, port: int) -> IdentityThread:
    """up's identity service for a test mesh: devices connect only through it, as under `up`."""
    service = IdentityThread(home, home.control_identity(settings, port), home.system_identity(settings, port))
    service.start()
    return service


def free_port() -> int:
    """A loopback port free right now, for what must keep its port across restarts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int, *, attempts: int = 50) -> int:
    """The first of `count` consecutive loopback ports free right now (a cluster's nodes take runs of ports)."""
    for _ in range(attempts):
        first = free_port()
        if first + count - 1 > 65535:
            continue
        held = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise AssertionError(f"no run of {count} free loopback ports found in {attempts} attempts")
