"""The plan of a cluster of nats-server nodes on this machine (`up --cluster N`), pure.

Node k (1-based) of a mesh named M is the server `M-nk`; it listens for clients on
`[server] port` + k - 1, for routes on `[server] cluster_port` + k - 1 and, when
`[server] monitor_port` is set, for monitoring on `monitor_port` + k - 1; with `[mqtt] port`
set, every node serves MQTT devices on `[mqtt] port` + k - 1. It keeps its
JetStream store in `<home>/cluster/nk` and its configuration in `<home>/nats/cluster-nk.conf`,
beside the single server's, so the shared includes (the JetStream key, the users) are
found by file name. Every node routes to every other over mutual TLS with the mesh CA and
uses the same encryption key; the streams are replicated on three of them (R3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import MahavishnuError

if TYPE_CHECKING:
    from mahavishnu.runtime.natsconf import ServerConfig

CLUSTER_REPLICAS = 3  # the replicas of every stream of a cluster, unless [jetstream] replicas asks for more


class ClusterPlanError(MahavishnuError):
    """The settings do not describe a cluster this machine can run."""


@dataclass(frozen=True)
class Node:
    """One node of the loopback cluster: its names, ports and files."""

    index: int  # 1-based
    name: str  # "n1": how logs and messages name it
    server_name: str  # "<mesh>-n1": its name inside the cluster (JetStream peers, stream leaders)
    host: str  # the address clients on this machine use
    client_port: int
    route_port: int
    monitor_port: int  # 0: none
    mqtt_port: int  # 0: no MQTT listener
    store_dir: Path
    config: Path
    pid_file: Path

    @property
    def url(self) -> str:
        return f"tls://{self.host}:{self.client_port}"

    def describe(self) -> str:
        """How a message names the node: enough to find it and what it holds (pure)."""
        return (
            f"cluster node {self.name} ({self.server_name}: client port {self.client_port}, "
            f"route port {self.route_port}, store {self.store_dir})"
        )


def client_host(settings: Settings) -> str:
    """The address this machine's clients use for a server listening on `[server] host`."""
    host = settings.server.host
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def plan_nodes(root: Path, settings: Settings) -> tuple[Node, ...]:
    """The nodes of the cluster `settings` ask for (`[server] cluster`), in order; () for a single server."""
    server = settings.server
    nodes = []
    for k in range(1, server.cluster + 1):
        nodes.append(
            Node(
                index=k,
                name=f"n{k}",
                server_name=f"{settings.mesh.name}-n{k}",
                host=client_host(settings),
                client_port=server.port + k - 1,
                route_port=server.cluster_port + k - 1,
                monitor_port=server.monitor_port + k - 1 if server.monitor_port else 0,
                mqtt_port=settings.mqtt.port + k - 1 if settings.mqtt.port else 0,
                store_dir=root / "cluster" / f"n{k}",
                config=root / "nats" / f"cluster-n{k}.conf",
                pid_file=root / "nats" / f"cluster-n{k}.pid",
            )
        )
    return tuple(nodes)


def stream_replicas(settings: Settings) -> int:
    """How many copies of each stream: [jetstream] replicas for one server, at least 3 in a cluster.

    ClusterPlanError when a cluster has fewer nodes than the replicas asked for.
    """
    asked = settings.jetstream.replicas
    size = settings.server.cluster
    if not size:
        return asked
    if asked > size:
        raise ClusterPlanError(
            f"[jetstream] replicas = {asked} needs at least {asked} nodes, the cluster has {size}: "
            f"lower [jetstream] replicas or run `up --cluster {asked}`"
        )
    return max(asked, CLUSTER_REPLICAS)


def node_config(base: ServerConfig, node: Node, nodes: tuple[Node, ...], settings: Settings) -> ServerConfig:
    """The configuration of `node`: the single server's, with its own name, ports, store and routes (pure).

    Routes use the server certificate, which is valid for client and server authentication
    and names 127.0.0.1 and localhost, so the loopback routes verify like a real cluster's.
    """
    from mahavishnu.gateways.mqtt.devices import listener_block  # rendering a node: `up --cluster` only
    from mahavishnu.runtime.natsconf import ClusterBlock

    return dataclasses.replace(
        base,
        server_name=node.server_name,
        port=node.client_port,
        monitor_port=node.monitor_port,
        store_dir=node.store_dir,
        pid_file=node.pid_file,
        # Every node serves MQTT, on a port of its own: a device's session lives in the MQTT
        # account's replicated JetStream streams, so it may reconnect to any node and find it.
        mqtt_listener=listener_block(
            settings.mqtt.host,
            node.mqtt_port,
            cert=base.server_cert,
            key=base.server_key,
            ca=base.ca_file,
            replicas=stream_replicas(settings),  # as many as our own streams': a node may be down
        ),
        cluster=ClusterBlock(
            name=settings.mesh.name,
            host=settings.server.host,
            port=node.route_port,
            routes=tuple(f"{peer.host}:{peer.route_port}" for peer in nodes if peer is not node),
            cert=base.server_cert,
            key=base.server_key,
            ca_file=base.ca_file,
        ),
    )
