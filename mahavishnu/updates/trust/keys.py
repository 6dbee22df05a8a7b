"""Signing keys as files: ed25519, one PEM (PKCS#8) per key, readable by its owner only.

A key file is named for its role and key id, `<role>/<keyid>.key`, under the mesh's
trust/keys/ (online: the mesh signs with it) or under a folder the operator keeps
elsewhere (offline: `trust init --offline-keys DIR`, then `artifact sign --key FILE`).
ed25519 because a device verifies it without pyca/cryptography (securesystemslib's pure
Python fallback: the edge install stays nats-py, msgspec and python-tuf).
Private keys are never logged, put in an event or in an error message: only key ids are.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner

from mahavishnu.runtime.home import write_private
from mahavishnu.updates.trust.policy import TrustError


def generate() -> CryptoSigner:
    return CryptoSigner(Ed25519PrivateKey.generate())


def save(signer: CryptoSigner, folder: Path, role: str) -> Path:
    """Write the signer's private key to folder/<role>/<keyid>.key, 0600 from its first byte."""
    path = folder / role / f"{signer.public_key.keyid}.key"
    for made in (folder, path.parent):  # write_private makes only the last folder 0700
        made.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, signer.private_bytes.decode())
    return path


def load(path: Path) -> CryptoSigner:
    """The signer of a key file; TrustError naming the file when it is not an ed25519 private key."""
    try:
        private = load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise TrustError(f"cannot read the key file {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise TrustError(
            f"{path} is not an unencrypted PEM private key: give a key file made by `trust init`"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise TrustError(f"{path} is not an ed25519 key: the mesh's metadata is signed with ed25519 keys only")
    return CryptoSigner(private)


def online(folder: Path, role: str) -> list[CryptoSigner]:
    """The role's keys kept under `folder` (the mesh's trust/keys), in key id order."""
    return [load(path) for path in sorted((folder / role).glob("*.key"))]
