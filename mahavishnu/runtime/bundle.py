"""Node bundles of a cluster across hosts: `cluster init --hosts` writes them, `up --node BUNDLE` installs one.

A bundle is a folder laid out like a state directory, so installing it is copying its
files to the same places:

    node/node.json         the node: mesh, index, host, ports, peers' routes, CA fingerprint (hostplan.NodeSpec)
    node/cert.pem key.pem  the node's certificate, for its host only (client and routes)
    mahavishnu.toml        [server] host and ports, [jetstream] replicas: for every command on that host
    ca/ca.pem              the CA's public certificate (never its key)
    control/ system/       the control and system credentials (the node's up connects with them)
    nats/*.conf            the JetStream key and the server's includes (users, callout)

It holds the control credentials and the JetStream key: it is as secret as the state
directory, written 0600 in 0700 folders. The control host's node (the first) installs
only node/ and the settings: its state directory is where the bundles came from.
"""

from __future__ import annotations

import socket
from pathlib import Path

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from certs import CertificateAuthority
from core.config import Settings
from core.errors import MahavishnuError
from mahavishnu.runtime.home import Home, write_private
from mahavishnu.runtime.hostplan import NodeSpec, certificate_problem, host_config, plan_hosts, settings_toml
from mahavishnu.runtime.natsconf import ServerConfig
from mahavishnu.runtime.provisioning import prepare, server_config

NODE_JSON = Path("node") / "node.json"
SETTINGS = Path("mahavishnu.toml")


class BundleError(MahavishnuError):
    """A bundle cannot be written, or cannot run here; the message names the bundle, the host and what to do."""


def shared_files(home: Home) -> tuple[Path, ...]:
    """What every node needs from the control host's state directory, relative to it."""
    paths = [home.ca_dir / "ca.pem"]
    for folder in (home.control_dir, home.system_dir):
        paths += [folder / "ca.pem", folder / "cert.pem", folder / "key.pem"]
    paths += [
        home.key_include,
        home.users_include,
        home.operators_include,
        home.system_include,
        home.mqtt_include,
        home.callout_include,
    ]
    return tuple(path.relative_to(home.root) for path in paths)


def ca_fingerprint(ca_pem: Path) -> str:
    return x509.load_pem_x509_certificate(ca_pem.read_bytes()).fingerprint(hashes.SHA256()).hex()


# --- cluster init ------------------------------------------------------------------------


def write_bundles(home: Home, settings: Settings, hosts: tuple[str, ...], out: Path) -> list[Path]:
    """One bundle per host in `out`/<host>/, from this (control) host's state directory, created if missing.

    BundleError when a bundle's folder is already there (bundles are made once; move old ones away).
    """
    prepare(home, settings)  # the CA, the credentials and the includes every bundle carries
    ca = CertificateAuthority.load(home.ca_dir)
    nodes = plan_hosts(hosts, settings, ca_fingerprint(home.ca_dir / "ca.pem"))
    folders = [out / node.host for node in nodes]
    for folder in folders:
        if folder.exists():
            raise BundleError(f"{folder} exists: move the old bundles away, then run `cluster init` again")
    written = []
    for node, folder in zip(nodes, folders, strict=True):
        folder.mkdir(mode=0o700, parents=True)
        ca.issue_server(node.server_name, hosts=[node.host], out_dir=folder / "node", days=settings.certs.server_days)
        (folder / "node" / "ca.pem").unlink()  # the CA certificate has one place in a bundle: ca/ca.pem
        write_private(folder / NODE_JSON, msgspec.json.encode(node).decode() + "\n")
        write_private(folder / SETTINGS, settings_toml(node))
        for relative in shared_files(home):
            write_private(folder / relative, (home.root / relative).read_text())
        written.append(folder)
    return written


# --- up --node ---------------------------------------------------------------------------


def read_node(bundle: Path) -> NodeSpec:
    """The node a bundle is for; BundleError when `bundle` is not one."""
    path = bundle / NODE_JSON
    try:
        return msgspec.json.decode(path.read_bytes(), type=NodeSpec)
    except FileNotFoundError:
        raise BundleError(
            f"{bundle} is not a node bundle ({NODE_JSON} is missing): give a folder written by "
            "`mahavishnu cluster init --hosts ...`"
        ) from None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BundleError(f"{path} cannot be read ({exc}): make the bundles again with `cluster init`") from None


def local_address_problem(host: str) -> str | None:
    """Why `host` is not an address of this machine, or None when one of its addresses is.

    An address is this machine's when a socket can be bound to it: what the node's server
    is about to do.
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"its host {host} does not resolve here ({exc.strerror})"
    for family, kind, _, _, address in infos:
        with socket.socket(family, kind) as probe:
            try:
                probe.bind((address[0], 0))
            except OSError:
                continue
            return None
    addresses = sorted({str(info[4][0]) for info in infos} - {host})
    resolved = f" ({', '.join(addresses)})" if addresses else ""
    return f"its host {host}{resolved} is not an address of this machine ({socket.gethostname()})"


def certificate_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(sans.get_values_for_type(x509.DNSName)) + tuple(
        str(ip) for ip in sans.get_values_for_type(x509.IPAddress)
    )


def check_node(bundle: Path, node: NodeSpec) -> None:
    """BundleError, in one line naming the bundle's host and this machine or its certificate, unless the
    bundle can run here: its host is one of this machine's addresses and its certificate, issued by its
    CA, names that host."""
    where = f"bundle {bundle} (node {node.name} for host {node.host})"
    problem = local_address_problem(node.host)
    if problem is not None:
        raise BundleError(f"{where} cannot run here: {problem}; run it on {node.host}, or use this host's bundle")
    try:
        cert = x509.load_pem_x509_certificate((bundle / "node" / "cert.pem").read_bytes())
        ca = x509.load_pem_x509_certificate((bundle / "ca" / "ca.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{where} is incomplete ({exc}): make the bundles again with `cluster init`") from None
    try:
        cert.verify_directly_issued_by(ca)
        issued = ca.fingerprint(hashes.SHA256()).hex() == node.ca_fingerprint
    except (ValueError, TypeError, InvalidSignature):
        issued = False
    if not issued:
        raise BundleError(f"{where}: its certificate is not from this mesh's CA; make the bundles again")
    problem = certificate_problem(node, certificate_names(cert))
    if problem is not None:
        raise BundleError(f"{where}: {problem}; use the bundle made for {node.host}, or make them again")


def install(home: Home, bundle: Path, node: NodeSpec) -> None:
    """Put the bundle's files into the state directory; the control host's node takes only node/ (see above).

    BundleError when the control host's bundle is run with another mesh's state directory.
    """
    if node.services:
        ca_pem = home.ca_dir / "ca.pem"
        if not ca_pem.is_file() or ca_fingerprint(ca_pem) != node.ca_fingerprint:
            raise BundleError(
                f"bundle {bundle} is the control host's node ({node.host}): run it with the state directory "
                f"`cluster init` ran in (MAHAVISHNU_HOME), not {home.root}"
            )
        files = [NODE_JSON, Path("node/cert.pem"), Path("node/key.pem")]
    else:
        files = [NODE_JSON, Path("node/cert.pem"), Path("node/key.pem"), *shared_files(home)]
    for relative in files:
        write_private(home.root / relative, (bundle / relative).read_text())
    if not (home.root / SETTINGS).is_file():  # a home with settings of its own keeps them
        write_private(home.root / SETTINGS, (bundle / SETTINGS).read_text())


def prepare_node(home: Home, settings: Settings, node: NodeSpec) -> ServerConfig:
    """Write the node's server configuration (nats/node.conf); the control host's node first prepares its home."""
    if node.services:
        prepare(home, settings)
    config = host_config(server_config(home, settings, certificate=home.node_dir), node)
    home.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(home.node_conf, config.render())
    return config
