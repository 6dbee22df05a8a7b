"""The state directory of a mesh ($MAHAVISHNU_HOME): its layout (creating it: mahavishnu.runtime.provisioning).

Light on purpose: every CLI verb, the agent's included, names its paths through Home.

mahavishnu.toml            settings (optional; defaults otherwise)
ca/                        the mesh CA (certs.CertificateAuthority)
server/                    the server's certificate and key
control/                   the control services' client certificate and key
nats/server.conf           generated nats-server configuration
nats/jetstream-key.conf    the JetStream encryption key, 0600 (included by server.conf)
nats/mqtt.conf             the MQTT account's configured user, the bridge (its devices: the identity service)
mqtt-bridge/               the MQTT bridge's client certificate and key (when [mqtt] port is set)
mqtt-devices.json          the ids of the devices enrolled with --transport mqtt
jetstream/                 the JetStream store, encrypted at rest
keys/devices/<id>.key      each device's data key, 0600: erasing a device deletes it (projections.keystore)
trust/                     the update metadata's online keys and signed files (mahavishnu.updates.trust.local)
nats/cluster-nK.conf       with `up --cluster N`: node K's configuration (mahavishnu.runtime.clusterplan)
cluster/nK/                node K's JetStream store, encrypted with the same key
node/                      with `up --node BUNDLE`: the node's node.json, certificate and key (from its bundle)
nats/node.conf             with `up --node BUNDLE`: the node's configuration (mahavishnu.runtime.hostplan)
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import MahavishnuError
from core.store import Identity
from mahavishnu.runtime.clusterplan import client_host, plan_nodes

if TYPE_CHECKING:
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
    def callout_include(self) -> Path:
        """The server's auth callout block: the issuer our identity service signs with, the users it skips."""
        return self.nats_dir / "callout.conf"

    @property
    def callout_seed(self) -> Path:
        """The identity service's signing key (an account nkey seed, 0600): only `up` reads it."""
        return self.root / "identity" / "issuer.nk"

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
    def node_dir(self) -> Path:
        """A node of a cluster across hosts: its node.json, cert.pem and key.pem (mahavishnu.runtime.bundle)."""
        return self.root / "node"

    @property
    def node_conf(self) -> Path:
        return self.nats_dir / "node.conf"

    @property
    def pid_file(self) -> Path:
        return self.nats_dir / "server.pid"

    @property
    def readmodels_dir(self) -> Path:
        return self.root / "readmodels"

    @property
    def artifact_cache_dir(self) -> Path:
        """The HTTP door's verified copies of artifacts, for devices that fetch by link (rebuilt, never backed up)."""
        return self.root / "artifact-cache"

    @property
    def artifact_links_key(self) -> Path:
        """The key that signs artifact links (mahavishnu.updates.links); a .key file, left out of backups."""
        return self.root / "artifact-links.key"

    @property
    def data_keys(self) -> FileKeyStore:
        """The data keys that seal personal fields (keys/devices/<id>.key); `mahavishnu erase` deletes them."""
        from projections.keystore import FileKeyStore  # the control plane's; Home itself is light

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


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only, from the first byte on."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
