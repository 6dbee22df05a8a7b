"""The generated nats-server configuration, proven against a real server: mTLS or nothing, encrypted store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs import CertificateAuthority
from core.errors import StoreUnavailable
from core.events import TelemetryReported
from core.store import EventStore, Identity, connect
from core.store.connection import MeshClient
from tests.harness import Mesh, start_mesh
from tests.waiting import wait_until


async def _refused(identity: Identity) -> StoreUnavailable:
    with pytest.raises(StoreUnavailable) as refused:
        nc = await connect(identity, name="intruder", reconnect=False, connect_timeout=3)
        await nc.close()
    return refused.value


async def test_the_control_identity_connects_and_uses_jetstream(mesh: Mesh) -> None:
    nc = await connect(mesh.identity, name="control", reconnect=False)
    try:
        info = await nc.jetstream().account_info()
        assert info.limits is not None
    finally:
        await nc.close()


async def test_a_client_without_a_certificate_is_refused(mesh: Mesh) -> None:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(mesh.identity.ca))
    client = MeshClient()  # nats-py's client, which closes what a failed connect opened (abandon)
    with pytest.raises((ssl.SSLError, ConnectionError)):  # the alert, or the reset that follows it
        try:
            await client.connect(
                mesh.identity.url, tls=context, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3
            )
        except BaseException:
            client.abandon()
            raise
        await client.close()
    wait_until(
        lambda: any("didn't provide a certificate" in line for line in mesh.server.recent),
        timeout=10,
        what="the server to log the refused handshake",
    )


async def test_plaintext_is_refused(mesh: Mesh) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", mesh.port)
    try:
        info = json.loads((await asyncio.wait_for(reader.readline(), 5)).removeprefix(b"INFO "))
        assert info["tls_required"] is True
        writer.write(b'CONNECT {"verbose":false}\r\nPING\r\n')
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(1024), 10)
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # closed before the loop ends, not left to a later test's GC
            await writer.wait_closed()
    assert b"PONG" not in answer  # the server never speaks NATS in the clear: it drops or errors


async def test_a_certificate_from_another_ca_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    other = CertificateAuthority.init(tmp_path / "other-ca")
    issued = other.issue_client("control", kind="control", out_dir=tmp_path / "control")
    assert issued.key_path is not None
    error = await _refused(Identity(mesh.identity.url, mesh.identity.ca, issued.cert_path, issued.key_path))
    assert "cannot" in str(error) or "refused" in str(error)


async def test_an_expired_certificate_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    ca = CertificateAuthority.load(mesh.home.ca_dir)
    long_ago = datetime.now(UTC) - timedelta(days=30)
    issued = ca.issue_client("expired-one", kind="control", out_dir=tmp_path / "expired", days=1, now=long_ago)
    assert issued.not_after < datetime.now(UTC)
    assert issued.key_path is not None
    await _refused(Identity(mesh.identity.url, mesh.identity.ca, issued.cert_path, issued.key_path))


async def test_a_valid_certificate_unknown_to_the_server_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    ca = CertificateAuthority.load(mesh.home.ca_dir)
    # an operator's certificate never added: no configured user maps it, and the identity service admits devices only
    issued = ca.issue_client("stranger", kind="operator", out_dir=tmp_path / "stranger")
    assert issued.key_path is not None
    error = await _refused(Identity(mesh.identity.url, mesh.identity.ca, issued.cert_path, issued.key_path))
    assert "refused certificate" in str(error)


def test_the_monitoring_port_listens_on_loopback_only(mesh: Mesh) -> None:
    conf = mesh.home.server_conf.read_text()
    http_lines = [line.strip() for line in conf.splitlines() if line.strip().startswith("http")]
    assert all(line.startswith("http: 127.0.0.1:") for line in http_lines)
    assert "verify_and_map: true" in conf
    keys = [
        line.split(":")[0].strip() for line in conf.splitlines() if ":" in line and not line.strip().startswith("#")
    ]
    assert keys.count("listen") == 1 and "port" not in keys  # one listener, and it is the TLS one


def test_key_files_are_private(mesh: Mesh) -> None:
    home = mesh.home
    private = (home.key_include, home.control_dir / "key.pem", home.server_dir / "key.pem", home.callout_seed)
    for path in private:
        assert path.stat().st_mode & 0o077 == 0, path
    jetstream = mesh.home.server_conf.read_text().split("jetstream {")[1].split("}")[0]
    assert "key:" not in jetstream.split("include")[0]
    # the identity service's signing key: its public half is in the configuration, its seed nowhere
    seed = home.callout_seed.read_text().strip()
    for conf in home.nats_dir.glob("*.conf"):
        assert seed not in conf.read_text(), conf


async def test_no_event_is_plaintext_on_disk(tmp_path: Path) -> None:
    marker = "plaintext-marker-7f3a9c"
    own = start_mesh(tmp_path / "mesh")
    try:
        nc = await connect(own.identity, name="writer", reconnect=False)
        store = EventStore(nc)
        await store.ensure_streams()
        await store.append(TelemetryReported(device_id=marker, metrics={"x": 1.0}))
        await nc.close()
    finally:
        own.stop()  # a clean stop flushes every block to disk
    blocks = [p for p in (own.home.store_dir).rglob("*.blk") if p.stat().st_size]
    assert blocks, "no message block on disk: the test would prove nothing"
    assert not [p for p in own.home.store_dir.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()]
