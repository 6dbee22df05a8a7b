"""A device's own cryptography for `agent csr` and `agent provision`: with `cryptography` where it is installed,
else with the `openssl` command (a device's install has neither `cryptography` nor `certs`).

Two things: make the device's key (0600 from its first byte) and its CSR, and check that a
claim's bootstrap certificate is its CA's and names its claim, and that its key is the
certificate's, so a foreign or altered claim file fails here in one line rather than at
the mesh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from core.errors import MahavishnuError
from mahavishnu.identity.claimfile import ClaimError

NEEDS = "the `cryptography` package or the `openssl` command: install one"


def make_key_and_csr(device_id: str, out: Path, algorithm: str) -> tuple[Path, Path]:
    """key.pem (0600) and csr.pem (CN=<device_id>) in `out` (made 0700); MahavishnuError when neither tool works."""
    try:
        from certs import make_key_and_csr as with_cryptography
        from certs import validate_identity
    except ImportError:  # a device without `cryptography`: openssl makes the same files
        return _openssl_csr(device_id, out, algorithm)
    validate_identity(device_id)
    return with_cryptography(device_id, out, algorithm)  # type: ignore[arg-type]  # argparse's choices


def _openssl() -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise MahavishnuError(f"this needs {NEEDS}")
    return openssl


def _run(*args: str, doing: str) -> str:
    try:
        return subprocess.run([_openssl(), *args], check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise MahavishnuError(f"openssl could not {doing}: {said}") from exc


def _openssl_csr(device_id: str, out: Path, algorithm: str) -> tuple[Path, Path]:
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    key, csr = out / "key.pem", out / "csr.pem"
    new_key = (
        ["-newkey", "ed25519"]
        if algorithm == "ed25519"
        else ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    )
    old_umask = os.umask(0o077)  # the key is 0600 from its first byte
    try:
        made = ["req", "-new", *new_key, "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={device_id}"]
        _run(*made, doing="make the CSR")
    finally:
        os.umask(old_umask)
    return key, csr


def check_claim_certificate(folder: Path, claim_id: str, where: str) -> None:
    """ClaimError in one line unless `folder`'s cert.pem is signed by its ca.pem, names `claim_id` as a
    claim, and belongs to its key.pem (the claim's bootstrap files, written there from the claim file)."""
    try:
        import cryptography  # noqa: F401  # only to learn whether it is installed
    except ImportError:
        problem = _openssl_problem(folder, claim_id)
    else:
        problem = _cryptography_problem(folder, claim_id)
    if problem:
        raise ClaimError(f"{where} is not a claim of its mesh ({problem}): it was altered; ask for a new one")


def _cryptography_problem(folder: Path, claim_id: str) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        ca = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        key = serialization.load_pem_private_key((folder / "key.pem").read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        return f"its PEM does not parse: {type(exc).__name__}"
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # InvalidSignature, ValueError, TypeError: not its CA's, whichever way
        return "its certificate is not signed by its CA"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if f"mahavishnu:claim:{claim_id}" not in uris:
        return f"its certificate is not claim {claim_id}'s"
    der = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*der) != cert.public_key().public_bytes(*der):
        return "its key is not its certificate's"
    return ""


def _openssl_problem(folder: Path, claim_id: str) -> str:
    ca, cert, key = (str(folder / name) for name in ("ca.pem", "cert.pem", "key.pem"))
    try:
        # -no_check_time: an expired claim is the mesh's to refuse, with its own message
        _run("verify", "-no_check_time", "-CAfile", ca, cert, doing="verify the claim's certificate")
    except MahavishnuError:
        return "its certificate is not signed by its CA"
    names = _run("x509", "-in", cert, "-noout", "-ext", "subjectAltName", doing="read the claim's certificate")
    if f"URI:mahavishnu:claim:{claim_id}" not in re.split(r"[\s,]+", names):
        return f"its certificate is not claim {claim_id}'s"
    try:
        ours = _run("pkey", "-in", key, "-pubout", doing="read the claim's key")
    except MahavishnuError:
        return "its key does not parse"
    if ours != _run("x509", "-in", cert, "-noout", "-pubkey", doing="read the claim's certificate"):
        return "its key is not its certificate's"
    return ""
