"""Creating what a mesh's state directory lacks: the CA, the certificates, the JetStream key, the server config.

Idempotent, run by `up` and `init` on every start; the layout itself is mahavishnu.runtime.home's.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from pathlib import Path

from certs import AlreadyIssuedError, CertificateAuthority, NoCAError, certificate_uri
from core.config import Settings
from mahavishnu.control.permissions import site_mappings, users_for
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.identity import issuer
from mahavishnu.identity.decision import ACCOUNT, DELEGATED
from mahavishnu.runtime.home import CONTROL_ID, SYSTEM_ID, Home, HomeError, write_private
from mahavishnu.runtime.natsconf import LeafListener, ServerConfig, key_include_text, render_callout, render_users
from projections.database import ensure_key_file


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
    issuer.ensure(home)
    ensure_key_file(home.root)
    config = server_config(
        home, settings, port=port, monitor_port=monitor_port, mqtt_port=mqtt_port, leaf_port=leaf_port
    )
    write_users(home, ca)
    write_callout(home, ca)
    write_private(home.server_conf, config.render())
    return config


def server_config(
    home: Home,
    settings: Settings,
    *,
    port: int | None = None,
    monitor_port: int | None = None,
    mqtt_port: int | None = None,
    leaf_port: int | None = None,
    certificate: Path | None = None,
) -> ServerConfig:
    """The single server's configuration from the state directory's layout and the settings (pure).

    `certificate` is the folder of the server's cert.pem and key.pem (the state directory's
    server/ unless a node of a cluster across hosts has its own).
    """
    folder = home.server_dir if certificate is None else certificate
    mqtt_port = settings.mqtt.port if mqtt_port is None else mqtt_port
    return ServerConfig(
        server_name=settings.mesh.name,
        host=settings.server.host,
        port=settings.server.port if port is None else port,
        monitor_port=settings.server.monitor_port if monitor_port is None else monitor_port,
        server_cert=folder / "cert.pem",
        server_key=folder / "key.pem",
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
        callout_include=home.callout_include.name,
        mqtt_listener=mqtt.listener_block(
            settings.mqtt.host,
            mqtt_port,
            cert=folder / "cert.pem",
            key=folder / "key.pem",
            ca=home.ca_dir / "ca.pem",
            # a node of a cluster across hosts (`up --node`: replicas 3): MQTT sessions as many
            replicas=settings.jetstream.replicas if settings.jetstream.replicas > 1 else 0,
        ),
        leaf=leaf_listener(home, settings, leaf_port),
    )


def write_callout(home: Home, ca: CertificateAuthority) -> None:
    """The server's auth callout block: our issuer key, and the control identity as the callout's own user."""
    now = datetime.now(UTC)
    control = [certificate_uri(r.serial) for r in ca.issued() if r.identity == CONTROL_ID and r.is_live(now)]
    write_private(home.callout_include, render_callout(issuer.public_key(home), ACCOUNT, control, DELEGATED))


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
    """Regenerate the server's users from the CA registry: one per live client certificate but a device's.

    Every other verified certificate (a device's, NATS or MQTT) goes to up's identity service.
    """
    now = datetime.now(UTC)
    records = ca.issued()
    mesh, ops, system = users_for([r for r in records if not mqtt.is_bridge_record(r)], now)
    write_private(home.mqtt_include, render_users(mqtt.mqtt_users(records, now)))
    write_private(home.users_include, render_users(mesh) + site_mappings(records, now))  # both in MESH
    write_private(home.operators_include, render_users(ops))
    write_private(home.system_include, render_users(system))


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
