"""The CA on disk: init and load, server and client certificates, CSRs, expiry, files."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs import (
    AlreadyIssuedError,
    BadCSRError,
    CAExistsError,
    CertError,
    CertificateAuthority,
    InvalidIdError,
    KeyAlgorithm,
    NoCAError,
    NotIssuedError,
    make_key_and_csr,
)
from certs.files import sync_files


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_a_ca_that_loads_back(tmp_path: Path, algorithm: KeyAlgorithm) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca", algorithm=algorithm, org="Acme")
    names = sorted(p.name for p in (tmp_path / "ca").iterdir())
    assert names == ["ca.key", "ca.pem", "crl.pem", "issued.jsonl", "revocations.json"]
    assert mode(tmp_path / "ca") == 0o700
    assert mode(tmp_path / "ca" / "ca.key") == 0o600
    assert (tmp_path / "ca" / "issued.jsonl").read_text() == ""
    assert json.loads((tmp_path / "ca" / "revocations.json").read_text()) == []

    cert = load_cert(ca.cert_path)
    assert cert.subject.rfc4514_string() == "CN=Acme CA,O=Acme"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    cert.verify_directly_issued_by(cert)
    key_type = ed25519.Ed25519PublicKey if algorithm == "ed25519" else ec.EllipticCurvePublicKey
    assert isinstance(cert.public_key(), key_type)

    loaded = CertificateAuthority.load(tmp_path / "ca")
    assert loaded.algorithm == algorithm
    assert loaded.certificate == cert
    assert loaded.org == "Acme"


def test_ca_validity_starts_five_minutes_back(tmp_path: Path) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    ca = CertificateAuthority.init(tmp_path / "ca", days=10, now=now)
    assert ca.certificate.not_valid_before_utc == now - timedelta(minutes=5)
    assert ca.certificate.not_valid_after_utc == now + timedelta(days=10)


def test_init_refuses_an_existing_ca(ca: CertificateAuthority) -> None:
    key_before = (ca.directory / "ca.key").read_bytes()
    with pytest.raises(CAExistsError, match="already exists"):
        CertificateAuthority.init(ca.directory)
    assert (ca.directory / "ca.key").read_bytes() == key_before


def test_load_without_a_ca_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(NoCAError) as info:
        CertificateAuthority.load(tmp_path / "nothing")
    assert str(info.value) == f"no CA in {tmp_path / 'nothing'}: run `mahavishnu ca init` first"


def test_load_refuses_a_corrupt_ca_pem(ca: CertificateAuthority) -> None:
    ca.cert_path.write_bytes(b"-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertError, match=r"ca\.pem is not a PEM certificate"):
        CertificateAuthority.load(ca.directory)


def test_load_refuses_a_corrupt_ca_key(ca: CertificateAuthority) -> None:
    (ca.directory / "ca.key").write_text("garbage")
    with pytest.raises(CertError, match=r"ca\.key is not an unencrypted PEM private key"):
        CertificateAuthority.load(ca.directory)


def test_load_refuses_a_key_of_another_ca(ca: CertificateAuthority, tmp_path: Path, algorithm: KeyAlgorithm) -> None:
    other = CertificateAuthority.init(tmp_path / "other", algorithm=algorithm)
    shutil.copy(other.directory / "ca.key", ca.directory / "ca.key")
    with pytest.raises(CertError, match="do not match"):
        CertificateAuthority.load(ca.directory)


def test_load_refuses_a_corrupt_registry(ca: CertificateAuthority, tmp_path: Path) -> None:
    path = ca.directory / "issued.jsonl"
    path.write_text("{not json\n")
    with pytest.raises(CertError, match=r"issued\.jsonl line 1 is malformed"):
        CertificateAuthority.load(ca.directory)
    path.unlink()
    (ca.directory / "issued.json").write_text('{"dev-1": [{"serial": 1}]}')  # an old mesh's registry, damaged
    with pytest.raises(CertError, match=r"issued\.json is malformed"):
        CertificateAuthority.load(ca.directory)


def test_an_old_meshs_issued_json_becomes_issued_jsonl_once(tmp_path: Path) -> None:
    ca = CertificateAuthority.init(tmp_path / "ca")
    first = ca.issue_client("dev-1", out_dir=tmp_path / "a")
    second = ca.issue_client("dev-2", out_dir=tmp_path / "b")
    records = {r.identity: r for r in ca.issued()}
    legacy = {
        identity: [
            {
                "serial": r.serial,
                "kind": r.kind,
                "not_after": r.not_after.isoformat(),
                "fingerprint_sha256": r.fingerprint_sha256,
            }
        ]
        for identity, r in records.items()
    }
    (ca.directory / "issued.jsonl").unlink()
    (ca.directory / "issued.json").write_text(json.dumps(legacy))
    loaded = CertificateAuthority.load(ca.directory)
    assert {r.serial for r in loaded.issued()} == {first.serial, second.serial}
    assert not (ca.directory / "issued.json").exists()
    assert len((ca.directory / "issued.jsonl").read_text().splitlines()) == 2


def test_a_torn_last_line_is_left_unread_and_the_next_issue_follows_it(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    issued = ca.issue_client("dev-1", out_dir=tmp_path / "a")
    with (ca.directory / "issued.jsonl").open("a") as handle:
        handle.write('{"identity": "dev-cut"')  # a crash in the middle of an append
    assert [r.serial for r in CertificateAuthority.load(ca.directory).issued()] == [issued.serial]


def test_loading_again_reads_what_another_process_appended(ca: CertificateAuthority, tmp_path: Path) -> None:
    seen_first = CertificateAuthority.load(ca.directory)  # this process has read the file so far
    elsewhere = CertificateAuthority.load(ca.directory)
    issued = elsewhere.issue_client("dev-later", out_dir=tmp_path / "later")
    assert issued.serial not in {r.serial for r in seen_first.issued()}  # an open CA is a snapshot
    assert issued.serial in {r.serial for r in CertificateAuthority.load(ca.directory).issued()}


def test_an_issue_whose_files_are_synced_later_records_it_at_once(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue_client("dev-deferred", out_dir=tmp_path / "deferred", sync_files=False)
    # the CA's record is there before the files are synced: the next change may go on
    assert issued.serial in {r.serial for r in CertificateAuthority.load(ca.directory).issued()}
    issued.sync()
    assert x509.load_pem_x509_certificate(issued.cert_path.read_bytes()).serial_number == issued.serial
    assert issued.key_path is not None and mode(issued.key_path) == 0o600


def test_syncing_a_file_that_is_gone_names_it(tmp_path: Path) -> None:
    with pytest.raises(CertError, match=r"cannot write .*gone\.pem"):
        sync_files(tmp_path / "gone.pem")


def test_server_certificate_has_dns_and_ip_sans(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "out" / "nats-1"
    issued = ca.issue_server("nats-1", hosts=["nats-1.mesh.local", "localhost", "10.0.0.7", "fd00::7"], out_dir=out)
    assert (issued.cert_path, issued.key_path, issued.ca_path) == (out / "cert.pem", out / "key.pem", out / "ca.pem")
    assert mode(out) == 0o700
    assert mode(out / "key.pem") == 0o600
    assert (out / "ca.pem").read_bytes() == ca.cert_path.read_bytes()

    cert = load_cert(issued.cert_path)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.serial_number == issued.serial
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["nats-1.mesh.local", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.0.0.7"),
        ipaddress.ip_address("fd00::7"),
    ]
    usages = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert usages == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_missing_directories_are_created_private_and_files_are_replaced_atomically(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    out = tmp_path / "a" / "b" / "c"
    ca.issue_client("dev-1", out_dir=out)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", out)] == [0o700] * 3
    (out / "key.pem").chmod(0o644)  # loosened by someone: a new key must not inherit that
    ca.rotate_client("dev-1", out_dir=out)
    assert mode(out / "key.pem") == 0o600
    assert sorted(p.name for p in out.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]


def test_an_output_path_that_is_a_file_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(CertError, match="cannot create directory"):
        ca.issue_client("dev-1", out_dir=tmp_path / "taken")
    assert ca.issued() == []


def test_server_certificate_may_be_issued_again(ca: CertificateAuthority, tmp_path: Path) -> None:
    first = ca.issue_server("nats-1", hosts=["localhost"], out_dir=tmp_path / "s")
    second = ca.issue_server("nats-1", hosts=["localhost", "127.0.0.1"], out_dir=tmp_path / "s")
    assert first.serial != second.serial
    assert load_cert(second.cert_path).serial_number == second.serial
    assert [r.serial for r in ca.issued()] == [first.serial, second.serial]


def test_client_certificate_dn_san_and_usages(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue_client("sensor-7", kind="control", out_dir=tmp_path / "c")
    cert = load_cert(issued.cert_path)
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.subject.rfc4514_string() == "CN=sensor-7,OU=control,O=Mahavishnu"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "mahavishnu:control:sensor-7",
        f"mahavishnu:cert:{issued.serial:x}",
    ]
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_agreement == (ca.algorithm == "ecdsa-p256")
    assert mode(tmp_path / "c" / "key.pem") == 0o600
    assert b"ENCRYPTED" not in (tmp_path / "c" / "key.pem").read_bytes()
    assert (issued.identity, issued.kind, issued.not_after) == ("sensor-7", "control", cert.not_valid_after_utc)


def test_client_refusals(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(InvalidIdError, match=r"\^\[a-z0-9\]"):
        ca.issue_client("Bad_Id", out_dir=tmp_path / "x")
    with pytest.raises(InvalidIdError, match="device, control, operator"):
        ca.issue_client("dev-1", kind="server", out_dir=tmp_path / "x")
    with pytest.raises(InvalidIdError, match="host"):
        ca.issue_server("nats-1", hosts=["not a host"], out_dir=tmp_path / "x")
    assert not (tmp_path / "x").exists()
    assert ca.issued() == []


def test_csr_is_signed_without_writing_a_key(ca: CertificateAuthority, tmp_path: Path, algorithm: KeyAlgorithm) -> None:
    key_path, csr_path = make_key_and_csr("dev-9", tmp_path / "device", algorithm)
    assert mode(key_path) == 0o600
    assert mode(tmp_path / "device") == 0o700
    issued = ca.issue_client("dev-9", out_dir=tmp_path / "issued", csr_pem=csr_path.read_bytes())
    assert issued.key_path is None
    assert not (tmp_path / "issued" / "key.pem").exists()
    cert = load_cert(issued.cert_path)
    cert.verify_directly_issued_by(ca.certificate)
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert cert.public_key() == csr.public_key()
    assert cert.subject.rfc4514_string() == "CN=dev-9,OU=device,O=Mahavishnu"


def test_device_refuses_a_bad_identity(tmp_path: Path) -> None:
    with pytest.raises(InvalidIdError):
        make_key_and_csr("Dev 1", tmp_path / "device")
    assert not (tmp_path / "device").exists()


def test_tampered_csr_is_refused(ca: CertificateAuthority, tmp_path: Path) -> None:
    _, csr_path = make_key_and_csr("dev-1", tmp_path / "device")
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    der = csr.public_bytes(Encoding.DER).replace(b"dev-1", b"dev-2")
    tampered = x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)
    with pytest.raises(BadCSRError, match="CSR signature does not verify"):
        ca.issue_client("dev-2", out_dir=tmp_path / "out", csr_pem=tampered)
    with pytest.raises(BadCSRError, match="CSR signature does not verify"):
        ca.issue_client("dev-1", out_dir=tmp_path / "out", csr_pem=b"not a csr")
    with pytest.raises(BadCSRError, match="CN=dev-3"):
        ca.issue_client("dev-3", out_dir=tmp_path / "out", csr_pem=csr_path.read_bytes())
    assert ca.issued() == []


def csr_with(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, identity: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, identity)])
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.PEM)
    )


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "too weak (RSA, 1024 bits)"),
        (lambda: ec.generate_private_key(ec.SECP224R1()), "too weak (an EC key on secp224r1, 224 bits)"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "unsupported curve (secp256k1)"),
    ],
    ids=["rsa-1024", "p-224", "secp256k1"],
)
def test_a_weak_or_unsupported_csr_key_is_refused(
    ca: CertificateAuthority, tmp_path: Path, key: Any, said: str
) -> None:
    with pytest.raises(BadCSRError, match=re.escape(said)):
        ca.issue_client("dev-weak", out_dir=tmp_path / "out", csr_pem=csr_with(key(), "dev-weak"))
    assert ca.issued() == []


STRONG = [
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    lambda: ec.generate_private_key(ec.SECP521R1()),
]


@pytest.mark.parametrize("key", STRONG, ids=["rsa-2048", "p-521"])
def test_a_strong_rsa_or_p521_csr_key_is_certified(ca: CertificateAuthority, tmp_path: Path, key: Any) -> None:
    private = key()
    issued = ca.issue_client("dev-strong", out_dir=tmp_path / "out", csr_pem=csr_with(private, "dev-strong"))
    assert load_cert(issued.cert_path).public_key() == private.public_key()


def test_certificate_issued_in_the_past_has_expired(ca: CertificateAuthority, tmp_path: Path) -> None:
    real_now = datetime.now(UTC)
    past = real_now - timedelta(days=10)
    issued = ca.issue_client("old-1", out_dir=tmp_path / "old", days=1, now=past)
    cert = load_cert(issued.cert_path)
    assert cert.not_valid_before_utc == (past - timedelta(minutes=5)).replace(microsecond=0)
    assert cert.not_valid_after_utc < real_now
    # An expired certificate opens nothing, so it does not block a new one.
    renewed = ca.issue_client("old-1", out_dir=tmp_path / "old")
    assert load_cert(renewed.cert_path).not_valid_after_utc > real_now


def test_second_issue_is_refused_and_rotation_keeps_the_old_one(ca: CertificateAuthority, tmp_path: Path) -> None:
    first = ca.issue_client("dev-1", kind="operator", out_dir=tmp_path / "a")
    with pytest.raises(AlreadyIssuedError) as info:
        ca.issue_client("dev-1", out_dir=tmp_path / "b")
    assert "revoke" in str(info.value)
    assert "rotate" in str(info.value)
    with pytest.raises(AlreadyIssuedError, match="choose another server name"):
        ca.issue_server("dev-1", hosts=["localhost"], out_dir=tmp_path / "s")

    second = ca.rotate_client("dev-1", out_dir=tmp_path / "b")
    assert second.kind == "operator"
    assert second.serial != first.serial
    assert not ca.is_revoked(first.serial)
    assert [(r.serial, r.revoked) for r in ca.issued()] == [(first.serial, False), (second.serial, False)]

    with pytest.raises(NotIssuedError, match="no client certificate was ever issued"):
        ca.rotate_client("dev-2", out_dir=tmp_path / "c")


def test_issued_jsonl_records_each_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue_client("dev-1", out_dir=tmp_path / "a")
    (record,) = [json.loads(line) for line in (ca.directory / "issued.jsonl").read_text().splitlines()]
    assert record["identity"] == "dev-1"
    cert = load_cert(issued.cert_path)
    assert record["serial"] == cert.serial_number
    assert record["kind"] == "device"
    assert datetime.fromisoformat(record["not_after"]) == cert.not_valid_after_utc
    assert record["fingerprint_sha256"] == cert.fingerprint(hashes.SHA256()).hex()
    assert [r.serial for r in CertificateAuthority.load(ca.directory).issued()] == [cert.serial_number]
