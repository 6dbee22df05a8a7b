"""A small certificate authority for the mesh, on `cryptography`."""

from certs.authority import (
    CertificateAuthority,
    IssuedCertificate,
    issued_records,
    live_certificates,
    read_revocations,
    revocations_path,
)
from certs.device import make_key_and_csr
from certs.errors import (
    AlreadyIssuedError,
    BadCSRError,
    CAExistsError,
    CertError,
    CorruptCAError,
    InvalidIdError,
    NoCAError,
    NotIssuedError,
)
from certs.names import KeyAlgorithm, certificate_uri, client_uri, validate_identity
from certs.registry import IssuedRecord, RevocationEntry

__all__ = [
    "AlreadyIssuedError",
    "BadCSRError",
    "CAExistsError",
    "CertError",
    "CertificateAuthority",
    "CorruptCAError",
    "InvalidIdError",
    "IssuedCertificate",
    "IssuedRecord",
    "KeyAlgorithm",
    "NoCAError",
    "NotIssuedError",
    "RevocationEntry",
    "certificate_uri",
    "client_uri",
    "issued_records",
    "live_certificates",
    "make_key_and_csr",
    "read_revocations",
    "revocations_path",
    "validate_identity",
]
