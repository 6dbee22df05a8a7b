"""The state directory of a mesh ($MAHAVISHNU_HOME): its layout, and creating what is missing.

mahavishnu.toml            settings (optional; defaults otherwise)
ca/                        the mesh CA (certs.CertificateAuthority)
server/                    the server's certificate and key
control/                   the control services' client certificate and key
nats/server.conf           generated nats-server configuration
nats/jetstream-key.conf    the JetStream encryption key, 0600 (included by server.conf)
nats/mqtt.conf             the MQTT account's users: MQTT devices and the bridge (mahavishnu.gateways.mqtt.devices)
mqtt-bridge/               the MQTT bridge's client certificate and key (when [mqtt] port is set)
mqtt-devices.json          the ids of the devices enrolled with --transport mqtt
jetstream/                 the JetStream store, encrypted at rest
keys/devices/<id>.key      each device's data key, 0600: erasing a device deletes it (projections.keystore)
nats/cluster-nK.conf       with `up --cluster N`: node K's configuration (mahavishnu.runtime.clusterplan)
cluster/nK/                node K's JetStream store, encrypted with the same key
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from certs import AlreadyIssuedError, CertificateAuthority, NoCAError
from core.config import Settings
from core.errors import MahavishnuError
from core.store import Identity
from mahavishnu.control.permissions import users_for
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.runtime.clusterplan import client_host, plan_nodes
from mahavishnu.runtime.natsconf import LeafListener, ServerConfig, key_include_text, render_users
from projections.database import ensure_key_file
from projections.keystore import FileKeyStore

_PROC = Path("/proc")  # where Linux tells what a pid runs; elsewhere pid files are trusted as they are
CONTROL_ID = "control"
SYSTEM_ID = "system"


class HomeError(MahavishnuError):
    """The state directory is missing or damaged."""


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def control_dir(self) -> Path:
        return self.root / "control"

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    @property
    def server_conf(self) -> Path:
        return self.nats_dir / "server.conf"

    @property
    def key_include(self) -> Path:
        return self.nats_dir / "jetstream-key.conf"

    @property
    def users_include(self) -> Path:
        return self.nats_dir / "users.conf"

    @property
    def operators_include(self) -> Path:
        return self.nats_dir / "operators.conf"

    @property
    def system_include(self) -> Path:
        return self.nats_dir / "system.conf"

    @property
    def mqtt_include(self) -> Path:
        return self.nats_dir / "mqtt.conf"

    @property
    def mqtt_bridge_dir(self) -> Path:
        return self.root / "mqtt-bridge"

    @property
    def system_dir(self) -> Path:
        return self.root / "system"

    @property
    def roles_file(self) -> Path:
        return self.root / "roles.json"

    @property
    def pid_file(self) -> Path:
        return self.nats_dir / "server.pid"

    @property
    def readmodels_dir(self) -> Path:
        return self.root / "readmodels"

    @property
    def data_keys(self) -> FileKeyStore:
        """The data keys that seal personal fields (keys/devices/<id>.key); `mahavishnu erase` deletes them."""
        return FileKeyStore(self.root / "keys")

    @property
    def store_dir(self) -> Path:
        return self.root / "jetstream"

    def client_url(self, settings: Settings, port: int | None = None) -> str:
        # Listening everywhere: loopback is the address this machine's clients use.
        return f"tls://{client_host(settings)}:{port if port is not None else settings.server.port}"

    def alternate_urls(self, settings: Settings, port: int | None) -> tuple[str, ...]:
        """The other nodes' URLs when the settings ask for a cluster (none when a test names its port)."""
        if port is not None:
            return ()
        return tuple(node.url for node in plan_nodes(self.root, settings)[1:])

    def system_identity(self, settings: Settings, port: int | None = None) -> Identity:
        folder = self.system_dir
        return Identity(
            self.client_url(settings, port),
            folder / "ca.pem",
            folder / "cert.pem",
            folder / "key.pem",
            alternates=self.alternate_urls(settings, port),
        )

    def mqtt_bridge_identity(self, settings: Settings, port: int | None = None) -> Identity:
        """The MQTT bridge's identity: a user of the MQTT account (made by `prepare` when [mqtt] port is set)."""
        folder = self.mqtt_bridge_dir
        return Identity(self.client_url(settings, port), folder / "ca.pem", folder / "cert.pem", folder / "key.pem")

    def control_identity(self, settings: Settings, port: int | None = None) -> Identity:
        return Identity(
            url=self.client_url(settings, port),
            ca=self.control_dir / "ca.pem",
            cert=self.control_dir / "cert.pem",
            key=self.control_dir / "key.pem",
            alternates=self.alternate_urls(settings, port),
        )

    def check_ready(self) -> None:
        """HomeError saying what to do when the state directory was never prepared or lost a piece."""
        if not self.root.is_dir():
            raise HomeError(f"no mesh state in {self.root}: run `mahavishnu up` (or set MAHAVISHNU_HOME)")
        for needed in (self.control_dir / "cert.pem", self.control_dir / "key.pem", self.control_dir / "ca.pem"):
            if not needed.is_file():
                raise HomeError(f"{needed} is missing: run `mahavishnu up` once to recreate the control identity")


def prepare(
    home: Home,
    settings: Settings,
    *,
    port: int | None = None,
    monitor_port: int | None = None,
    mqtt_port: int | None = None,
    leaf_port: int | None = None,
) -> ServerConfig:
    """Create what is missing (CA, certificates, JetStream key) and write the server configuration.

    Idempotent: existing keys and certificates are kept. `port`/`monitor_port`/`leaf_port`
    override the settings (tests ask for -1, a free port). Raises HomeError or
    certs.CertError when the directory is damaged, with what to do.
    """
    home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        ca = CertificateAuthority.load(home.ca_dir)
    except NoCAError:
        ca = CertificateAuthority.init(home.ca_dir, algorithm=settings.certs.algorithm, days=settings.certs.ca_days)
    if not (home.server_dir / "cert.pem").is_file():
        ca.issue_server(
            settings.mesh.name, hosts=settings.server.hosts, out_dir=home.server_dir, days=settings.certs.server_days
        )
    _ensure_identity(ca, CONTROL_ID, "control", home.control_dir, settings.certs.client_days)
    _ensure_identity(ca, SYSTEM_ID, "system", home.system_dir, settings.certs.client_days)
    mqtt_port = settings.mqtt.port if mqtt_port is None else mqtt_port
    if mqtt_port:
        _ensure_identity(ca, mqtt.BRIDGE_ID, "control", home.mqtt_bridge_dir, settings.certs.client_days)
    _ensure_jetstream_key(home)
    ensure_key_file(home.root)
    config = ServerConfig(
        server_name=settings.mesh.name,
        host=settings.server.host,
        port=settings.server.port if port is None else port,
        monitor_port=settings.server.monitor_port if monitor_port is None else monitor_port,
        server_cert=home.server_dir / "cert.pem",
        server_key=home.server_dir / "key.pem",
        ca_file=home.ca_dir / "ca.pem",
        store_dir=home.store_dir,
        key_include=home.key_include.name,
        users_include=home.users_include.name,
        operators_include=home.operators_include.name,
        system_include=home.system_include.name,
        pid_file=home.pid_file,
        max_memory=settings.jetstream.max_memory,
        max_file=settings.jetstream.max_file,
        mqtt_include=home.mqtt_include.name,
        mqtt_listener=mqtt.listener_block(
            settings.mqtt.host,
            mqtt_port,
            cert=home.server_dir / "cert.pem",
            key=home.server_dir / "key.pem",
            ca=home.ca_dir / "ca.pem",
        ),
        leaf=leaf_listener(home, settings, leaf_port),
    )
    write_users(home, ca)
    write_private(home.server_conf, config.render())
    return config


def leaf_listener(home: Home, settings: Settings, port: int | None = None) -> LeafListener | None:
    """The hub's leaf node listener for edge sites, or None when [leaf] port is 0 (pure)."""
    port = settings.leaf.port if port is None else port
    if not port:
        return None
    return LeafListener(
        host=settings.leaf.host,
        port=port,
        server_cert=home.server_dir / "cert.pem",
        server_key=home.server_dir / "key.pem",
        ca_file=home.ca_dir / "ca.pem",
    )


def _ensure_identity(ca: CertificateAuthority, identity: str, kind: str, folder: Path, days: int) -> None:
    if (folder / "cert.pem").is_file():
        return
    try:
        ca.issue_client(identity, kind=kind, out_dir=folder, days=days)
    except AlreadyIssuedError:  # the files were lost, the CA still knows the identity: a new certificate
        ca.rotate_client(identity, out_dir=folder, days=days)


def write_users(home: Home, ca: CertificateAuthority) -> None:
    """Regenerate users.conf and operators.conf from the CA registry: one user per live client certificate."""
    now = datetime.now(UTC)
    records = ca.issued()
    mqtt_devices = mqtt.registered(home.root)
    mesh, ops, system = users_for([r for r in records if not mqtt.is_mqtt_record(r, mqtt_devices)], now)
    write_private(home.mqtt_include, render_users(mqtt.mqtt_users(records, now, mqtt_devices)))
    write_private(home.users_include, render_users(mesh))
    write_private(home.operators_include, render_users(ops))
    write_private(home.system_include, render_users(system))


def reload_server(home: Home) -> bool:
    """Ask every running server of the mesh (the single one, or each cluster node) to re-read its
    configuration (SIGHUP); False when none runs.

    A pid file is trusted only while its process is a nats-server: a pid left by a killed
    server may since belong to another process, which a SIGHUP would end.
    """
    reloaded = False
    for pid_file in sorted(home.nats_dir.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
            if _PROC.is_dir() and b"nats-server" not in (_PROC / str(pid) / "cmdline").read_bytes():
                continue
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError):  # gone, unreadable or not ours: nothing to reload there
            continue
        reloaded = True
    return reloaded


def _ensure_jetstream_key(home: Home) -> None:
    if home.key_include.is_file():
        return
    if home.store_dir.is_dir() and any(home.store_dir.iterdir()):
        raise HomeError(
            f"the JetStream store {home.store_dir} exists but its key file {home.key_include} is missing: "
            "restore the key file from backup, or move the store away to start empty"
        )
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    write_private(home.key_include, key_include_text(key))


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only, from the first byte on."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
