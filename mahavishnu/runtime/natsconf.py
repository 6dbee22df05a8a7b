"""Renders nats-server configuration from the templates in nats/ (pure, except for reading the template)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

# In a source checkout (and an editable install) the templates are the repository's nats/
# folder; a wheel carries them as mahavishnu/nats_templates.
_REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "nats"


def template_text(name: str) -> str:
    packaged = resources.files("mahavishnu").joinpath("nats_templates", name)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (_REPO_TEMPLATES / name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class User:
    """One identity the server accepts: its certificate URI SAN, and what it may publish and subscribe to.

    None for a permission list means unrestricted (the control services). The deny lists
    and `connection_types` (e.g. ("LEAFNODE",): this identity may only link a leaf server)
    are for edge sites. `allow_responses` lets it answer requests it received (publish once
    to their reply subjects) and nowhere else.
    """

    name: str
    publish_allow: tuple[str, ...] | None = None
    subscribe_allow: tuple[str, ...] | None = None
    publish_deny: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    connection_types: tuple[str, ...] = ()
    allow_responses: bool = False

    def render(self) -> str:
        entry = f"user: {json.dumps(self.name)}"
        rules = []
        for what, allow, deny in (
            ("publish", self.publish_allow, self.publish_deny),
            ("subscribe", self.subscribe_allow, self.subscribe_deny),
        ):
            parts = [] if allow is None else [f"allow: {json.dumps(list(allow))}"]
            parts += [f"deny: {json.dumps(list(deny))}"] if deny else []
            if parts:
                rules.append(f"{what}: {{ {', '.join(parts)} }}")
        if self.allow_responses:
            rules.append("allow_responses: true")
        if rules:
            entry += ", permissions: { " + ", ".join(rules) + " }"
        if self.connection_types:
            entry += f", allowed_connection_types: {json.dumps(list(self.connection_types))}"
        return "      { " + entry + " }"


@dataclass(frozen=True)
class LeafListener:
    """The hub's listener for edge sites' leaf servers: mTLS with the mesh CA, verify_and_map.

    A site's certificate maps to its user in users.conf (mahavishnu:cert:<serial>), which
    may only connect as a leaf node; `port` -1 lets the server pick (tests).
    """

    host: str
    port: int
    server_cert: Path
    server_key: Path
    ca_file: Path

    def render(self) -> str:
        return "\n".join(
            [
                "leafnodes {",
                f'  listen: "{self.host}:{self.port}"',
                # Sites dial exactly the URLs of their bundle: an advertised listen address may be
                # unreachable from a site or absent from the server certificate.
                "  no_advertise: true",
                "  tls {",
                f'    cert_file: "{self.server_cert}"',
                f'    key_file: "{self.server_key}"',
                f'    ca_file: "{self.ca_file}"',
                "    verify_and_map: true",
                "    timeout: 5",
                "  }",
                "}",
            ]
        )


@dataclass(frozen=True)
class ClusterBlock:
    """The `cluster {}` block of one node: where it listens for routes and which peers it dials.

    Routes are mutual TLS with the mesh CA (`verify: true`): a node accepts a route only from
    a certificate the CA issued, and checks the peer's certificate against the host name in
    the route URL, so every host of a real cluster must be in its certificate's names.
    """

    name: str  # the cluster's name: the same on every node
    host: str  # where this node listens for routes
    port: int
    routes: tuple[str, ...]  # the other nodes, "host:port" each
    cert: Path
    key: Path
    ca_file: Path

    def render(self) -> str:
        for path in (self.cert, self.key, self.ca_file):
            if not path.is_absolute():
                raise ValueError(f"{path} must be absolute: the server resolves relative paths from its own cwd")
        if not self.routes:
            raise ValueError("a cluster node needs the routes of its peers")
        routes = "\n".join(f"    {json.dumps('tls://' + route)}" for route in self.routes)
        return Template(template_text("cluster.conf.tmpl")).substitute(
            cluster_name=self.name,
            cluster_host=self.host,
            cluster_port=self.port,
            routes=routes,
            route_cert=self.cert,
            route_key=self.key,
            ca_file=self.ca_file,
        )


@dataclass(frozen=True)
class ServerConfig:
    """Everything one node's configuration depends on. Paths must be absolute."""

    server_name: str
    host: str
    port: int  # -1: the server picks a free port (tests)
    monitor_port: int  # 0: no monitoring; -1: a free port (tests)
    server_cert: Path
    server_key: Path
    ca_file: Path
    store_dir: Path
    key_include: str  # file name of the JetStream key include, beside the rendered config
    users_include: str  # file name of the users include (render_users), beside the rendered config
    operators_include: str  # the same, for the OPS account
    system_include: str  # the same, for the SYS account
    pid_file: Path
    max_memory: int = 256 * 1024 * 1024
    max_file: int = 10 * 1024**3
    # the MQTT account's users (mahavishnu.gateways.mqtt.devices), beside the rendered config
    mqtt_include: str = "mqtt.conf"
    callout_include: str = "callout.conf"  # render_callout, beside the rendered config
    mqtt_listener: str = "# no MQTT listener ([mqtt] port = 0)"  # mahavishnu.gateways.mqtt.devices.listener_block
    leaf: LeafListener | None = None  # None: no leaf node listener, no edge sites
    cluster: ClusterBlock | None = None  # None: a single server

    def render(self) -> str:
        for path in (self.server_cert, self.server_key, self.ca_file, self.store_dir, self.pid_file):
            if not path.is_absolute():
                raise ValueError(f"{path} must be absolute: the server resolves relative paths from its own cwd")
        if "/" in self.key_include + self.users_include + self.operators_include + self.system_include:
            raise ValueError("key_include and users_include must be file names beside the configuration file")
        monitor = f"http: 127.0.0.1:{self.monitor_port}" if self.monitor_port else "# no monitoring port"
        return Template(template_text("server.conf.tmpl")).substitute(
            server_name=self.server_name,
            host=self.host,
            port=self.port,
            monitor=monitor,
            server_cert=self.server_cert,
            server_key=self.server_key,
            ca_file=self.ca_file,
            store_dir=self.store_dir,
            max_memory=self.max_memory,
            max_file=self.max_file,
            key_include=self.key_include,
            users_include=self.users_include,
            operators_include=self.operators_include,
            system_include=self.system_include,
            pid_file=self.pid_file,
            mqtt_include=self.mqtt_include,
            callout_include=self.callout_include,
            mqtt_listener=self.mqtt_listener,
            leafnodes=self.leaf.render() if self.leaf else "# no leaf node listener: [leaf] port = 0",
            cluster=self.cluster.render() if self.cluster is not None else "# a single server: no cluster block",
        )


def render_users(users: Sequence[User]) -> str:
    """The content of the users include: the MESH account's users and their permissions (pure)."""
    lines = ["# Generated by mahavishnu from the CA registry: one user per live client certificate.", "users: ["]
    lines += [user.render() for user in users]
    lines.append("]")
    return "\n".join(lines) + "\n"


def render_callout(issuer: str, account: str, auth_users: Sequence[str], delegated: str) -> str:
    """The content of the callout include (pure): who signs the users the callout admits, and whom it is asked about.

    nats-server cannot change this block on a reload, so nothing in it may depend on the
    fleet: the server asks the callout about a client certificate no configured user maps
    (a device), and about every leaf link; `delegated` names an account without users, so
    the users of every configured account (control, operators, MQTT) are never sent to
    it. `auth_users` (required by the server) are the identity service's own users.
    """
    if not auth_users:
        raise ValueError("the auth callout needs at least one configured user: the identity service's own")
    users = "\n".join(f"    {json.dumps(name)}" for name in auth_users)
    return (
        "\n".join(
            [
                "# Generated by mahavishnu: devices are admitted by up's identity service (ADR 0012).",
                "auth_callout {",
                f"  issuer: {json.dumps(issuer)}",
                f"  account: {json.dumps(account)}",
                "  auth_users: [",
                users,
                "  ]",
                f"  allowed_accounts: [{json.dumps(delegated)}]",
                "}",
            ]
        )
        + "\n"
    )


def key_include_text(key: str) -> str:
    """The content of the 0600 include file that holds the JetStream encryption key."""
    return f"key: {json.dumps(key)}\n"
