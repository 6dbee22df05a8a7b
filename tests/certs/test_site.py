"""An edge site's certificate: a server for its devices and a client of the hub, one per site name."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs import AlreadyIssuedError, CertError, CertificateAuthority, InvalidIdError, certificate_uri


def test_a_site_certificate_serves_its_devices_and_dials_the_hub(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue_site("site-a", hosts=["edge.example", "10.0.0.5"], out_dir=tmp_path / "site")

    cert = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["edge.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "mahavishnu:site:site-a",
        certificate_uri(issued.serial),
    ]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert issued.kind == "site" and issued.key_path is not None
    assert issued.key_path.stat().st_mode & 0o777 == 0o600
    assert [r.kind for r in ca.issued()] == ["site"]


def test_a_site_name_is_one_identity(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.issue_client("dev-a", kind="device", out_dir=tmp_path / "dev")
    with pytest.raises(AlreadyIssuedError, match="choose another site name"):
        ca.issue_site("dev-a", hosts=["localhost"], out_dir=tmp_path / "site")
    with pytest.raises(InvalidIdError):
        ca.issue_site("Site A", hosts=["localhost"], out_dir=tmp_path / "site")


def test_a_site_certificate_is_not_rotated_as_a_clients(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.issue_site("site-a", hosts=["localhost"], out_dir=tmp_path / "site")
    with pytest.raises(CertError, match="edge site"):
        ca.rotate_client("site-a", out_dir=tmp_path / "next")
