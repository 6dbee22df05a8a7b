"""Pure X.509 construction: keys, names, certificates, CSRs and CRLs, all in memory.

No function here reads or writes a file, so the whole shape of what the CA signs is
testable without a directory. `authority` does the I/O around these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.errors import BadCSRError, CorruptCAError
from certs.names import SERVER_KIND, SITE_KIND, KeyAlgorithm, certificate_uri, client_uri

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
# What the CA certifies: its own kinds of key, and a device's RSA key from a CSR (CSR_KEYS).
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# Tolerate clocks a little behind ours: a certificate is valid from 5 minutes before issue.
BACKDATE = timedelta(minutes=5)
# How long a published CRL stays current; `CertificateAuthority.refresh_crl` re-signs it.
CRL_VALIDITY = timedelta(days=30)
# The keys a CSR may carry: strong enough, and ones every TLS peer of the mesh (nats-server's
# Go TLS among them) verifies. Anything weaker is refused as weak, not as unknown, so a
# device's maker learns what to change.
_CSR_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
CSR_KEYS = "an ECDSA P-256/P-384/P-521, Ed25519 or RSA (2048 bits or more) key"


@dataclass(frozen=True, kw_only=True)
class Revoked:
    """One line of a CRL: which serial, since when, and why."""

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags


def generate_key(algorithm: KeyAlgorithm) -> PrivateKey:
    """A fresh private key: ECDSA on P-256 or Ed25519."""
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def algorithm_of(key: PrivateKey) -> KeyAlgorithm:
    """The `KeyAlgorithm` of a key this package generated."""
    return "ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "ecdsa-p256"


def key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS8 PEM: the mesh reads keys non-interactively, so file mode is the protection."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    """The CRL as PEM."""
    return crl.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER certificate."""
    return cert.fingerprint(hashes.SHA256()).hex()


def same_public_key(a: PublicKey, b: PublicKey) -> bool:
    """Whether two public keys are the same key."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def _hash_for(key: PrivateKey) -> hashes.SHA256 | None:
    # Ed25519 signs the message itself and takes no separate hash.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _key_usage(*, key_agreement: bool = False, signs_certificates: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def subject_name(common_name: str, org: str, unit: str | None = None) -> x509.Name:
    """O, [OU,] CN in that DER order, so the RFC 4514 string reads "CN=<cn>,OU=<unit>,O=<org>".

    nats-server's verify_and_map matches users on that string, so the order never changes.
    """
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if unit is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def _base(
    subject: x509.Name, issuer: x509.Name, public_key: PublicKey, days: int, now: datetime, serial: int | None = None
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def ca_certificate(key: PrivateKey, *, org: str, days: int, now: datetime) -> x509.Certificate:
    """A self-signed CA certificate that may sign leaves only (path length 0) and CRLs."""
    name = subject_name(f"{org} CA", org)
    builder = (
        _base(name, name, key.public_key(), days, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
    )
    return builder.sign(key, _hash_for(key))


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    *,
    subject: x509.Name,
    sans: Sequence[x509.GeneralName],
    usages: Sequence[x509.ObjectIdentifier],
    days: int,
    now: datetime,
    serial: int | None = None,
) -> x509.Certificate:
    builder = (
        _base(subject, ca_cert.subject, public_key, days, now, serial)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # keyAgreement lets an ECDSA key do static ECDH; Ed25519 keys only sign.
        .add_extension(_key_usage(key_agreement=isinstance(public_key, ec.EllipticCurvePublicKey)), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    return builder.sign(ca_key, _hash_for(ca_key))


def server_certificate(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    *,
    name: str,
    org: str,
    sans: Sequence[x509.GeneralName],
    days: int,
    now: datetime,
) -> x509.Certificate:
    """A server certificate for `sans`, also usable as a client (NATS cluster routes dial with it)."""
    return _leaf(
        ca_cert,
        ca_key,
        public_key,
        subject=subject_name(name, org, SERVER_KIND),
        sans=sans,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=days,
        now=now,
    )


def client_certificate(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    *,
    identity: str,
    kind: str,
    org: str,
    days: int,
    now: datetime,
) -> x509.Certificate:
    """A client certificate: CN=<identity>, OU=<kind>, O=<org>, and two URI SANs:
    mahavishnu:<kind>:<identity> (who) and mahavishnu:cert:<serial hex> (which certificate).

    nats-server's verify_and_map accepts a client when any URI SAN names a configured
    user; listing users by certificate lets the server refuse one revoked certificate of
    an identity while it accepts its successor (rotation).
    """
    serial = x509.random_serial_number()
    return _leaf(
        ca_cert,
        ca_key,
        public_key,
        subject=subject_name(identity, org, kind),
        sans=[
            x509.UniformResourceIdentifier(client_uri(kind, identity)),
            x509.UniformResourceIdentifier(certificate_uri(serial)),
        ],
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        days=days,
        now=now,
        serial=serial,
    )


def site_certificate(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: PublicKey,
    *,
    name: str,
    org: str,
    sans: Sequence[x509.GeneralName],
    days: int,
    now: datetime,
) -> x509.Certificate:
    """An edge site's certificate: CN=<name>, OU=site, serverAuth and clientAuth.

    Its SANs are the site's hosts (its devices dial them), mahavishnu:site:<name> and
    mahavishnu:cert:<serial>: the hub maps the latter to the site's leaf node user, so
    revoking this one certificate refuses the site's link.
    """
    serial = x509.random_serial_number()
    return _leaf(
        ca_cert,
        ca_key,
        public_key,
        subject=subject_name(name, org, SITE_KIND),
        sans=[
            *sans,
            x509.UniformResourceIdentifier(client_uri(SITE_KIND, name)),
            x509.UniformResourceIdentifier(certificate_uri(serial)),
        ],
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=days,
        now=now,
        serial=serial,
    )


def make_csr(key: PrivateKey, identity: str) -> x509.CertificateSigningRequest:
    """A CSR with subject CN=<identity>; the CA decides everything else."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, _hash_for(key))


def csr_public_key(csr_pem: bytes, identity: str) -> PublicKey:
    """The public key of a CSR for `identity`, after checking it.

    Raises BadCSRError when the PEM does not parse, the signature does not verify, the
    CN is not `identity`, or the key is weak or of a kind the mesh does not certify
    (`key_problem`).
    """
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm, InvalidSignature) as exc:
        raise BadCSRError(f"CSR signature does not verify (cannot parse the CSR: {exc}); make a new CSR") from exc
    if not valid:
        raise BadCSRError("CSR signature does not verify: the CSR was altered or corrupted; make a new CSR")
    common_names = [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if common_names != [identity]:
        named = ", ".join(f"CN={cn}" for cn in common_names) or "no CN"
        raise BadCSRError(f"CSR names {named}, not {identity}: make a CSR with CN={identity}")
    public_key = csr.public_key()
    problem = key_problem(public_key)
    if problem or not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey):
        raise BadCSRError(f"CSR key {problem}: make a new CSR with {CSR_KEYS}")
    return public_key


def key_problem(public_key: object) -> str:
    """Why a CSR's key may not be certified ("" when it may): too weak, or of a kind TLS peers do not take (pure)."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.key_size < MIN_EC_BITS:
            return f"is too weak (an EC key on {public_key.curve.name}, {public_key.curve.key_size} bits)"
        supported = isinstance(public_key.curve, _CSR_CURVES)
        return "" if supported else f"is on an unsupported curve ({public_key.curve.name})"
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            return f"is too weak (RSA, {public_key.key_size} bits)"
        return ""
    return f"type is not supported ({type(public_key).__name__.removeprefix('_')})"


def certificate_revocation_list(
    ca_cert: x509.Certificate, ca_key: PrivateKey, revoked: Sequence[Revoked], *, number: int, now: datetime
) -> x509.CertificateRevocationList:
    """A CRL signed by the CA listing `revoked`, current from `now` for CRL_VALIDITY."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + CRL_VALIDITY)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    for entry in revoked:
        line = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked_at)
        # RFC 5280 5.3.1: leave the reason code out rather than say "unspecified".
        if entry.reason is not x509.ReasonFlags.unspecified:
            line = line.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(line.build())
    return builder.sign(ca_key, _hash_for(ca_key))


def load_ca(cert_pem_bytes: bytes, key_pem_bytes: bytes, where: str) -> tuple[x509.Certificate, PrivateKey]:
    """Parse ca.pem and ca.key and check they belong together.

    Raises CorruptCAError naming the bad file, when either does not parse, the key is
    not ECDSA P-256/Ed25519, or the key is not the certificate's.
    """
    try:
        cert = x509.load_pem_x509_certificate(cert_pem_bytes)
    except ValueError as exc:
        raise CorruptCAError(f"{where}/ca.pem is not a PEM certificate ({exc}); restore it from a backup") from exc
    try:
        key = serialization.load_pem_private_key(key_pem_bytes, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CorruptCAError(
            f"{where}/ca.key is not an unencrypted PEM private key ({exc}); restore it from a backup"
        ) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey) and not (
        isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        raise CorruptCAError(f"{where}/ca.key is not an ECDSA P-256 or Ed25519 key; restore the CA's own key")
    cert_key = cert.public_key()
    if not isinstance(cert_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) or not same_public_key(
        cert_key, key.public_key()
    ):
        raise CorruptCAError(f"{where}/ca.pem and ca.key do not match; restore both from the same backup")
    return cert, key
