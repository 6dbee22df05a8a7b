"""`mahavishnu ca ...` through argparse, as the top-level CLI wires it."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs import (
    AlreadyIssuedError,
    BadCSRError,
    CAExistsError,
    CertError,
    InvalidIdError,
    NoCAError,
    make_key_and_csr,
)
from certs.cli import add


def run(home: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mahavishnu")
    add(parser.add_subparsers(dest="command", required=True).add_parser("ca"))
    args = parser.parse_args(["ca", *argv])
    result: int = args.func(args, home)
    return result


def test_a_whole_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert run(home, "init", "--algorithm", "ed25519", "--days", "30") == 0
    assert run(home, "issue-server", "nats-1", "--host", "localhost", "--host", "127.0.0.1") == 0
    assert run(home, "issue-client", "dev-1", "--kind", "control") == 0
    assert run(home, "rotate-client", "dev-1") == 0
    assert run(home, "revoke", "dev-1", "--reason", "superseded") == 0
    assert run(home, "list") == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"created CA in {home / 'ca'} (ed25519")
    assert lines[1].startswith("issued server nats-1 serial ")
    assert lines[2].startswith("issued control dev-1 serial ")
    assert lines[3].startswith("issued control dev-1 serial ")
    assert [line.split(" serial")[0] for line in lines[4:6]] == ["revoked dev-1"] * 2
    assert [line.split()[0:2] + line.split()[-1:] for line in lines[6:]] == [
        ["dev-1", "control", "revoked"],
        ["dev-1", "control", "revoked"],
        ["nats-1", "server", "live"],
    ]
    assert len(lines) == 9
    assert (home / "issued" / "nats-1" / "cert.pem").exists()
    assert stat.S_IMODE((home / "issued" / "dev-1" / "key.pem").stat().st_mode) == 0o600
    assert all("PRIVATE KEY" not in line for line in lines)


def test_issue_client_from_a_csr_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    run(home, "init")
    _, csr = make_key_and_csr("dev-5", tmp_path / "device")
    assert run(home, "issue-client", "dev-5", "--csr", str(csr), "--out", str(tmp_path / "out")) == 0
    assert (tmp_path / "out" / "cert.pem").exists()
    assert not (tmp_path / "out" / "key.pem").exists()
    assert ", key " not in capsys.readouterr().out


def test_refusals(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(NoCAError, match="run `mahavishnu ca init` first"):
        run(home, "issue-client", "dev-1")
    with pytest.raises(NoCAError):
        run(home, "list")
    run(home, "init")
    with pytest.raises(CAExistsError, match="already exists"):
        run(home, "init")
    run(home, "issue-client", "dev-1")
    with pytest.raises(AlreadyIssuedError, match="revoke it"):
        run(home, "issue-client", "dev-1")
    with pytest.raises(InvalidIdError, match=r"\^\[a-z0-9\]\[a-z0-9-\]\{0,62\}\$"):
        run(home, "issue-client", "../Escape")
    assert not (home / "Escape").exists()

    _, csr = make_key_and_csr("dev-2", tmp_path / "device")
    der = x509.load_pem_x509_csr(csr.read_bytes()).public_bytes(Encoding.DER)
    forged = x509.load_der_x509_csr(der.replace(b"dev-2", b"dev-3")).public_bytes(Encoding.PEM)
    (tmp_path / "forged.pem").write_bytes(forged)
    with pytest.raises(BadCSRError, match="CSR signature does not verify"):
        run(home, "issue-client", "dev-3", "--csr", str(tmp_path / "forged.pem"))
    with pytest.raises(CertError, match="cannot read"):
        run(home, "issue-client", "dev-4", "--csr", str(tmp_path / "missing.pem"))

    (home / "ca" / "ca.pem").write_text("not a certificate")
    with pytest.raises(CertError, match=r"ca\.pem is not a PEM certificate"):
        run(home, "list")


def test_revoke_one_serial_in_hex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    run(home, "init")
    run(home, "issue-client", "dev-1")
    serial = capsys.readouterr().out.split(" serial ")[1].split()[0]
    run(home, "rotate-client", "dev-1")
    capsys.readouterr()
    run(home, "revoke", "dev-1", "--serial", serial)
    assert capsys.readouterr().out.startswith(f"revoked dev-1 serial {serial} (unspecified)")
