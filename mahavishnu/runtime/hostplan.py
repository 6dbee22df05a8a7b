"""A cluster across real hosts (`cluster init --hosts`, `up --node BUNDLE`): the plan of its nodes, pure.

One node per host, every node on the same ports: clients on `[server] port`, routes on
`[server] cluster_port`, each on its own host's address. Node k of mesh M is the server
`M-nk`; the first host named is the control host (where `cluster init` runs and the CA
lives), whose node also runs the mesh's services (ADR 0014). What a node knows of the
cluster is its NodeSpec, written into its bundle as node.json.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING

import msgspec

from core.config import Settings
from mahavishnu.runtime.clusterplan import CLUSTER_REPLICAS, ClusterPlanError

if TYPE_CHECKING:
    from mahavishnu.runtime.natsconf import ServerConfig

SIZES = (3, 5)  # as `up --cluster`: a majority survives one (or two) lost hosts


class NodeSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One node of a cluster across hosts, as its bundle's node.json says."""

    mesh: str
    index: int  # 1-based, in the order of --hosts
    host: str  # the host's name or address: in its certificate, in its peers' routes
    client_port: int
    route_port: int
    peers: tuple[str, ...]  # the other nodes' routes, "host:port"
    ca_fingerprint: str  # the mesh CA's SHA-256: which mesh the bundle belongs to

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def server_name(self) -> str:
        return f"{self.mesh}-n{self.index}"

    @property
    def services(self) -> bool:
        """True for the control host's node: it runs the identity service, projections, queries, gateways."""
        return self.index == 1

    @property
    def url(self) -> str:
        return f"tls://{_url_host(self.host)}:{self.client_port}"

    @property
    def size(self) -> int:
        return len(self.peers) + 1


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


def parse_hosts(text: str) -> tuple[str, ...]:
    """The hosts of `--hosts h1,h2,h3` (pure); ClusterPlanError saying what is wrong and what to give."""
    hosts = tuple(part.strip() for part in text.split(","))
    if any(not host or any(c.isspace() for c in host) for host in hosts):
        raise ClusterPlanError(f"--hosts {text!r}: give host names or addresses separated by commas, e.g. a,b,c")
    if len(set(hosts)) != len(hosts):
        raise ClusterPlanError(f"--hosts {text!r} names a host twice: one node per host")
    if len(hosts) not in SIZES:
        raise ClusterPlanError(f"--hosts names {len(hosts)} hosts: a cluster has 3 or 5 (a majority must survive)")
    return hosts


def plan_hosts(hosts: tuple[str, ...], settings: Settings, ca_fingerprint: str) -> tuple[NodeSpec, ...]:
    """Every node of the cluster across `hosts`, in order (pure)."""
    port, route = settings.server.port, settings.server.cluster_port
    return tuple(
        NodeSpec(
            mesh=settings.mesh.name,
            index=k,
            host=host,
            client_port=port,
            route_port=route,
            peers=tuple(f"{_url_host(peer)}:{route}" for peer in hosts if peer != host),
            ca_fingerprint=ca_fingerprint,
        )
        for k, host in enumerate(hosts, start=1)
    )


def node_settings(settings: Settings, node: NodeSpec) -> Settings:
    """The settings `up --node` runs with (pure): the bundle's host and ports win, streams get three replicas.

    ClusterPlanError when the settings are another mesh's.
    """
    if settings.mesh.name != node.mesh:
        raise ClusterPlanError(
            f"the bundle is a node of mesh {node.mesh!r}, these settings are mesh {settings.mesh.name!r}: "
            f"set [mesh] name = {node.mesh!r}, or use this mesh's bundles"
        )
    server = msgspec.structs.replace(
        settings.server, host=node.host, port=node.client_port, cluster_port=node.route_port, cluster=0
    )
    replicas = max(settings.jetstream.replicas, CLUSTER_REPLICAS)
    if replicas > node.size:
        raise ClusterPlanError(
            f"[jetstream] replicas = {replicas} needs at least {replicas} nodes, the cluster has {node.size}"
        )
    jetstream = msgspec.structs.replace(settings.jetstream, replicas=replicas)
    return msgspec.structs.replace(settings, server=server, jetstream=jetstream)


def settings_toml(node: NodeSpec) -> str:
    """The mahavishnu.toml a bundle carries (pure): so every command on the node's host finds its server."""
    return "\n".join(
        [
            f"# Node {node.name} of the cluster across hosts (written by `mahavishnu cluster init`).",
            "[mesh]",
            f"name = {msgspec.json.encode(node.mesh).decode()}",
            "[server]",
            f"host = {msgspec.json.encode(node.host).decode()}",
            f"port = {node.client_port}",
            f"cluster_port = {node.route_port}",
            "[jetstream]",
            f"replicas = {CLUSTER_REPLICAS}",
            "",
        ]
    )


def host_config(base: ServerConfig, node: NodeSpec) -> ServerConfig:
    """The node's nats-server configuration (pure): the single server's, with its name, address, store and routes.

    Routes dial each peer by the host named in `--hosts`, and verify the peer's certificate
    against it: each node's certificate names its own host only.
    """
    from mahavishnu.runtime.natsconf import ClusterBlock  # rendering a node: `up --node` only

    return dataclasses.replace(
        base,
        server_name=node.server_name,
        host=node.host,
        port=node.client_port,
        cluster=ClusterBlock(
            name=node.mesh,
            host=node.host,
            port=node.route_port,
            routes=node.peers,
            cert=base.server_cert,
            key=base.server_key,
            ca_file=base.ca_file,
        ),
    )


def certificate_problem(node: NodeSpec, names: tuple[str, ...]) -> str | None:
    """Why a certificate that names `names` cannot serve `node`'s host, or None when it names it (pure)."""
    wanted = _canonical(node.host)
    if any(_canonical(name) == wanted for name in names):
        return None
    return f"its certificate names {', '.join(names) or 'no host'}, not the node's host {node.host}"


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name.lower().rstrip(".")
