"""The device side of enrolment: make a private key and a CSR; the key never leaves the device."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization

from certs.build import generate_key, key_pem, make_csr
from certs.files import ensure_dir, write_atomic, write_private
from certs.names import KeyAlgorithm, validate_algorithm, validate_identity


def make_key_and_csr(identity: str, out_dir: Path, algorithm: KeyAlgorithm = "ecdsa-p256") -> tuple[Path, Path]:
    """Write key.pem (0600) and csr.pem (CN=<identity>) into `out_dir` (made 0700 if missing).

    Returns (key_path, csr_path). Send csr.pem to the CA (`mahavishnu ca issue-client ID
    --csr FILE`); keep key.pem. Raises InvalidIdError for a bad identity or algorithm,
    CertError when the files cannot be written.
    """
    validate_identity(identity)
    validate_algorithm(algorithm)
    key = generate_key(algorithm)
    csr = make_csr(key, identity)
    ensure_dir(out_dir)
    key_path = write_private(out_dir / "key.pem", key_pem(key))
    csr_path = write_atomic(out_dir / "csr.pem", csr.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path
