"""Revocation: the registry, revocations.json and the signed CRL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from certs import CertificateAuthority, InvalidIdError, NotIssuedError, RevocationEntry


def load_crl(ca: CertificateAuthority) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(ca.crl_path.read_bytes())


def signed_by(crl: x509.CertificateRevocationList, ca: CertificateAuthority) -> bool:
    public_key = ca.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return crl.is_signature_valid(public_key)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_fresh_ca_publishes_an_empty_signed_crl(ca: CertificateAuthority) -> None:
    crl = load_crl(ca)
    assert signed_by(crl, ca)
    assert len(crl) == 0
    assert crl.issuer == ca.certificate.subject
    assert crl_number(crl) == 1


def test_revoke_records_and_lists_the_serial_in_a_signed_crl(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue_client("dev-1", out_dir=tmp_path / "dev-1")
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    entries = ca.revoke("dev-1", reason="key_compromise", now=when)

    assert entries == [
        RevocationEntry(serial=issued.serial, identity="dev-1", revoked_at=when, reason="key_compromise")
    ]
    assert ca.is_revoked(issued.serial)
    assert ca.revocations() == entries
    assert [r.revoked for r in ca.issued()] == [True]
    on_disk = json.loads((ca.directory / "revocations.json").read_text())
    assert on_disk == [
        {"serial": issued.serial, "identity": "dev-1", "revoked_at": when.isoformat(), "reason": "key_compromise"}
    ]

    crl = load_crl(ca)
    assert signed_by(crl, ca)
    assert crl_number(crl) == 2
    assert crl.last_update_utc == when
    line = crl.get_revoked_certificate_by_serial_number(issued.serial)
    assert line is not None
    assert line.revocation_date_utc == when
    assert line.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise

    reloaded = CertificateAuthority.load(ca.directory)
    assert reloaded.is_revoked(issued.serial)
    assert reloaded.revocations() == entries


def test_revoke_takes_every_live_certificate_or_one_serial(ca: CertificateAuthority, tmp_path: Path) -> None:
    first = ca.issue_client("dev-1", out_dir=tmp_path / "a")
    second = ca.rotate_client("dev-1", out_dir=tmp_path / "b")
    third = ca.rotate_client("dev-1", out_dir=tmp_path / "c")

    only = ca.revoke("dev-1", serial=first.serial, reason="superseded")
    assert [e.serial for e in only] == [first.serial]
    rest = ca.revoke("dev-1")
    assert [e.serial for e in rest] == [second.serial, third.serial]
    assert {r.serial_number for r in load_crl(ca)} == {first.serial, second.serial, third.serial}
    # "unspecified" is left out of the CRL entry, as RFC 5280 asks.
    entry = load_crl(ca).get_revoked_certificate_by_serial_number(second.serial)
    assert entry is not None
    assert len(entry.extensions) == 0

    # Once everything is revoked the identity may be issued again.
    again = ca.issue_client("dev-1", out_dir=tmp_path / "d")
    assert not ca.is_revoked(again.serial)


def test_revoke_refusals(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(NotIssuedError, match="no certificate was ever issued to 'ghost'"):
        ca.revoke("ghost")
    issued = ca.issue_client("dev-1", out_dir=tmp_path / "a")
    with pytest.raises(NotIssuedError, match="was not issued to 'dev-1'"):
        ca.revoke("dev-1", serial=issued.serial + 1)
    with pytest.raises(InvalidIdError, match="key_compromise"):
        ca.revoke("dev-1", reason="lost it")
    ca.revoke("dev-1")
    with pytest.raises(NotIssuedError, match="already revoked"):
        ca.revoke("dev-1")


def test_refresh_crl_resigns_with_a_higher_number(ca: CertificateAuthority, tmp_path: Path) -> None:
    issued = ca.issue_server("nats-1", hosts=["localhost"], out_dir=tmp_path / "s")
    ca.revoke("nats-1")
    before = crl_number(load_crl(ca))
    later = datetime(2040, 1, 1, tzinfo=UTC)
    ca.refresh_crl(now=later)
    crl = load_crl(ca)
    assert crl_number(crl) == before + 1
    assert crl.next_update_utc is not None and crl.next_update_utc > later
    assert crl.get_revoked_certificate_by_serial_number(issued.serial) is not None
