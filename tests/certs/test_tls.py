"""The certificates work in a real TLS handshake with Python's OpenSSL, with mutual authentication."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs import CertificateAuthority, IssuedCertificate, KeyAlgorithm, make_key_and_csr


def server_context(server: IssuedCertificate, *, crl: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    assert server.key_path is not None
    ctx.load_cert_chain(server.cert_path, server.key_path)
    ctx.load_verify_locations(cafile=server.ca_path)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if crl is not None:
        ctx.load_verify_locations(cafile=crl)
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


def client_context(client: IssuedCertificate) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    assert client.key_path is not None
    ctx.load_cert_chain(client.cert_path, client.key_path)
    ctx.load_verify_locations(cafile=client.ca_path)
    return ctx


async def exchange(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str) -> str:
    """Connect over loopback; the server answers with the client's subject as it verified it."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        subject = writer.get_extra_info("peercert")["subject"]
        writer.write((",".join(f"{k}={v}" for rdn in subject for k, v in rdn) + "\n").encode())
        await writer.drain()
        writer.close()

    async with asyncio.timeout(5):
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
            )
            try:
                return (await reader.readline()).decode().strip()
            finally:
                writer.close()
                await writer.wait_closed()


@pytest.fixture
def server(ca: CertificateAuthority, tmp_path: Path) -> IssuedCertificate:
    return ca.issue_server("nats-1", hosts=["localhost", "127.0.0.1", "::1"], out_dir=tmp_path / "server")


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
async def test_mutual_tls_handshake(
    ca: CertificateAuthority, server: IssuedCertificate, tmp_path: Path, server_hostname: str
) -> None:
    client = ca.issue_client("dev-1", out_dir=tmp_path / "client")
    seen = await exchange(server_context(server), client_context(client), server_hostname)
    assert seen == "organizationName=Mahavishnu,organizationalUnitName=device,commonName=dev-1"


async def test_server_certificate_also_serves_as_a_client(ca: CertificateAuthority, server: IssuedCertificate) -> None:
    # NATS cluster routes dial each other with their server certificate.
    seen = await exchange(server_context(server), client_context(server), "localhost")
    assert seen.endswith("commonName=nats-1")


async def test_csr_issued_client_completes_a_handshake(
    ca: CertificateAuthority, server: IssuedCertificate, tmp_path: Path, algorithm: KeyAlgorithm
) -> None:
    key_path, csr_path = make_key_and_csr("dev-2", tmp_path / "device", algorithm)
    issued = ca.issue_client("dev-2", out_dir=tmp_path / "device", csr_pem=csr_path.read_bytes())
    client = dataclasses.replace(issued, key_path=key_path)
    seen = await exchange(server_context(server), client_context(client), "localhost")
    assert seen.endswith("commonName=dev-2")


async def test_client_refuses_a_name_the_server_certificate_does_not_carry(
    ca: CertificateAuthority, server: IssuedCertificate, tmp_path: Path
) -> None:
    client = ca.issue_client("dev-1", out_dir=tmp_path / "client")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        await exchange(server_context(server), client_context(client), "nats-2.mesh.local")


def refused_by_server(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
    """Run a handshake over in-memory BIOs and return why the server refused the client.

    Over a socket the client only sees the connection drop; in memory the server's own
    verification error is visible, so the test can say which check refused.
    """
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(to_client, to_server, server_hostname="localhost")
    server = server_ctx.wrap_bio(to_server, to_client, server_side=True)
    for _ in range(10):
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLCertVerificationError as exc:
                assert side is server, f"the client refused the server: {exc}"
                return str(exc.verify_message)
    raise AssertionError("the server accepted the client")


async def test_revoked_client_is_refused_by_a_crl_checking_server(
    ca: CertificateAuthority, server: IssuedCertificate, tmp_path: Path
) -> None:
    client = ca.issue_client("dev-1", out_dir=tmp_path / "client")
    assert await exchange(server_context(server, crl=ca.crl_path), client_context(client), "localhost")
    ca.revoke("dev-1", reason="key_compromise")
    assert refused_by_server(server_context(server, crl=ca.crl_path), client_context(client)) == "certificate revoked"


def test_expired_or_foreign_clients_are_refused(
    ca: CertificateAuthority, server: IssuedCertificate, tmp_path: Path, algorithm: KeyAlgorithm
) -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    expired = ca.issue_client("old-1", out_dir=tmp_path / "old", days=1, now=past)
    assert refused_by_server(server_context(server), client_context(expired)) == "certificate has expired"

    other = CertificateAuthority.init(tmp_path / "other-ca", algorithm=algorithm, org="Intruder")
    foreign = other.issue_client("dev-1", out_dir=tmp_path / "foreign")
    foreign_ctx = client_context(foreign)
    foreign_ctx.load_verify_locations(cafile=ca.cert_path)  # trusts our server, but we do not trust it
    assert refused_by_server(server_context(server), foreign_ctx) in {
        "self-signed certificate in certificate chain",  # the client sent its own CA along
        "unable to get local issuer certificate",
    }
