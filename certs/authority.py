"""The certificate authority: a directory holding the CA key, its certificate and its registry.

    <directory>/ca.pem            the CA certificate (what every peer trusts)
    <directory>/ca.key            the CA private key, PKCS8 PEM, 0600
    <directory>/issued.jsonl      what was issued, one line per certificate (see `registry`)
    <directory>/revocations.json  what was revoked
    <directory>/crl.pem           the signed X.509 CRL of every revoked serial

What goes into a certificate is decided by the pure `build` and `names` modules; this
class orders the checks, writes the files and keeps the registry in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from certs import build
from certs.build import PrivateKey, PublicKey
from certs.errors import (
    AlreadyIssuedError,
    CAExistsError,
    CertError,
    CorruptCAError,
    NoCAError,
    NotIssuedError,
)
from certs.files import (
    append_line,
    ensure_dir,
    read_bytes,
    read_from,
    read_json,
    sync_files,
    write_atomic,
    write_json,
    write_private,
)
from certs.names import (
    SERVER_KIND,
    SITE_KIND,
    KeyAlgorithm,
    parse_hosts,
    parse_reason,
    validate_algorithm,
    validate_days,
    validate_identity,
    validate_kind,
    validate_org,
)
from certs.registry import (
    IssuedRecord,
    Registry,
    RevocationEntry,
    issued_from_lines,
    issued_line,
    legacy_issued_from_json,
    revocations_from_json,
)

CA_CERT, CA_KEY, CRL = "ca.pem", "ca.key", "crl.pem"
ISSUED, REVOCATIONS = "issued.jsonl", "revocations.json"
LEGACY_ISSUED = "issued.json"  # meshes made before issued.jsonl: converted on first load


@dataclass(frozen=True, kw_only=True)
class IssuedCertificate:
    """What an issue wrote: cert.pem, key.pem (None when signed from a CSR) and a copy of ca.pem."""

    identity: str
    kind: str
    serial: int
    not_after: datetime
    cert_path: Path
    key_path: Path | None
    ca_path: Path
    fingerprint_sha256: str = ""

    def sync(self) -> None:
        """Force the files of an issue made with `sync_files=False` to disk. Raises CertError."""
        sync_files(*(path for path in (self.cert_path, self.key_path, self.ca_path) if path is not None))


def revocations_path(directory: Path) -> Path:
    """Where the CA in `directory` lists what it revoked (read by services that only need that)."""
    return directory / REVOCATIONS


def read_revocations(directory: Path) -> list[RevocationEntry]:
    """What the CA in `directory` revoked, without opening the CA (its key) or its list of issued certificates.

    Raises CorruptCAError naming the file when it is damaged.
    """
    return list(revocations_from_json(read_json(directory / REVOCATIONS, []), str(directory)))


@dataclass(frozen=True)
class _Read:
    """issued.jsonl as far as this process has read it: the file (inode), the bytes read, their records."""

    inode: int
    offset: int
    records: tuple[IssuedRecord, ...]


# Per CA directory, what was read of issued.jsonl: loading the CA again reads only the lines
# appended since (by this process or another), so opening a CA of 10,000 devices for each
# enrolment costs what opening one of 100 does.
_read_so_far: dict[Path, _Read] = {}


def issued_records(directory: Path) -> tuple[IssuedRecord, ...]:
    """Every certificate the CA in `directory` issued, in issue order, without its revoked flags or its key.

    The same tuple grows as certificates are issued: a caller that kept how many it saw
    reads only the new ones (the file is read only from where this process last stopped).
    """
    return _issued_records(directory)


def live_certificates(directory: Path, identity: str, now: datetime | None = None) -> list[IssuedRecord]:
    """What `CertificateAuthority.load(directory).live(identity)` answers, without opening the CA's key pair.

    Asked before every enrolment (a live certificate already?), on the provisioning
    service's event loop: only the registry's files are looked at.
    """
    return _registry(directory).live(identity, _utc(now))


def _issued_records(directory: Path) -> tuple[IssuedRecord, ...]:
    path = directory / ISSUED
    try:
        stat = path.stat()
    except FileNotFoundError:
        if not (directory / LEGACY_ISSUED).exists():
            return ()
        _convert_legacy(directory)
        stat = path.stat()
    known = _read_so_far.get(directory)
    if known is None or known.inode != stat.st_ino or stat.st_size < known.offset:  # another file: read it all
        known = _Read(stat.st_ino, 0, ())
    elif stat.st_size == known.offset:  # nothing appended since: asked at every connection event, so not opened
        return known.records
    records, used = issued_from_lines(read_from(path, known.offset), str(directory))
    known = _Read(stat.st_ino, known.offset + used, known.records + records)
    _read_so_far[directory] = known
    return known.records


# Per CA directory, the registry last composed (issued records with their revoked flags), the
# versions of the files it was made from (issued.jsonl's inode, revocations.json's), and how
# many issued records it holds: a load after an issue adds the new records, and only a
# revocation (or a registry file replaced, by a restore) composes it all again.
_composed: dict[Path, tuple[object, int, Registry]] = {}


# Per CA directory, ca.pem and ca.key as parsed, with the versions of the two files they were
# parsed from: the provisioning service opens the CA for every enrolment, and parsing the key
# each time was a fifth of what opening cost.
_pairs: dict[Path, tuple[object, tuple[x509.Certificate, PrivateKey]]] = {}


def _ca_pair(directory: Path) -> tuple[x509.Certificate, PrivateKey]:
    version = tuple(_file_version(directory / name) for name in (CA_CERT, CA_KEY))
    known = _pairs.get(directory)
    if known is not None and known[0] == version:
        return known[1]
    pair = build.load_ca(read_bytes(directory / CA_CERT), read_bytes(directory / CA_KEY), str(directory))
    _pairs[directory] = (version, pair)
    return pair


def _file_version(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _registry(directory: Path) -> Registry:
    records = _issued_records(directory)
    path = directory / REVOCATIONS
    read = _read_so_far.get(directory)
    try:
        stat = path.stat()
        version: object = (read.inode if read else None, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    except FileNotFoundError:
        version = (read.inode if read else None,)
    known = _composed.get(directory)
    if known is not None and known[0] == version and known[1] <= len(records):
        registry = known[2].with_issued_many(records[known[1] :])  # new serials: none of them is revoked
    else:
        registry = Registry(records).with_revoked(read_revocations(directory))
    _composed[directory] = (version, len(records), registry)
    return registry


def _convert_legacy(directory: Path) -> None:
    """Turn an old issued.json into issued.jsonl (same records, issue order kept per identity), once."""
    records = legacy_issued_from_json(read_json(directory / LEGACY_ISSUED, {}), str(directory))
    write_atomic(directory / ISSUED, b"".join(issued_line(r) for r in records))
    (directory / LEGACY_ISSUED).unlink()


def _utc(now: datetime | None) -> datetime:
    """`now` in UTC (a naive time is taken as UTC); the current time when None."""
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


class CertificateAuthority:
    """A CA on disk. Make one with `init`, open one with `load`; never construct directly."""

    def __init__(self, directory: Path, certificate: x509.Certificate, key: PrivateKey, registry: Registry) -> None:
        self.directory = directory
        self.certificate = certificate
        self._key = key
        self._registry = registry
        orgs = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        self.org = str(orgs[0].value) if orgs else "Mahavishnu"

    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        org: str = "Mahavishnu",
        algorithm: KeyAlgorithm = "ecdsa-p256",
        days: int = 3650,
        now: datetime | None = None,
    ) -> CertificateAuthority:
        """Create a CA in `directory` (made 0700 if missing) and return it.

        Raises CAExistsError if the directory already holds ca.pem or ca.key (a CA key is
        never overwritten), InvalidIdError for a bad org or algorithm, CertError on I/O.
        """
        validate_org(org)
        validate_algorithm(algorithm)
        validate_days(days)
        if (directory / CA_CERT).exists() or (directory / CA_KEY).exists():
            raise CAExistsError(f"a CA already exists in {directory}: use it, or move it away to start over")
        now = _utc(now)
        ensure_dir(directory)
        key = build.generate_key(algorithm)
        cert = build.ca_certificate(key, org=org, days=days, now=now)
        ca = cls(directory, cert, key, Registry())
        write_private(directory / CA_KEY, build.key_pem(key))
        write_atomic(directory / ISSUED, b"")
        ca._save_revocations(ca._registry, now)
        # ca.pem last: its presence marks a complete CA.
        write_atomic(directory / CA_CERT, build.cert_pem(cert))
        return ca

    @classmethod
    def load(cls, directory: Path) -> CertificateAuthority:
        """Open the CA in `directory`.

        Raises NoCAError when there is none, CorruptCAError when ca.pem, ca.key or a
        registry file is unreadable or ca.pem and ca.key do not match.
        """
        if not (directory / CA_CERT).exists():
            if (directory / CA_KEY).exists():
                raise CorruptCAError(f"{directory} holds ca.key but no ca.pem: restore ca.pem from a backup")
            raise NoCAError(f"no CA in {directory}: run `mahavishnu ca init` first")
        if not (directory / CA_KEY).exists():
            raise CorruptCAError(f"{directory} holds ca.pem but no ca.key: restore ca.key from a backup")
        cert, key = _ca_pair(directory)
        return cls(directory, cert, key, _registry(directory))

    @property
    def cert_path(self) -> Path:
        """The CA certificate, ca.pem: what every peer of the mesh trusts."""
        return self.directory / CA_CERT

    @property
    def crl_path(self) -> Path:
        """The signed CRL, crl.pem."""
        return self.directory / CRL

    @property
    def algorithm(self) -> KeyAlgorithm:
        """The CA's key algorithm, also used for the keys it generates."""
        return build.algorithm_of(self._key)

    def issue_server(
        self, name: str, *, hosts: Sequence[str], out_dir: Path, days: int = 397, now: datetime | None = None
    ) -> IssuedCertificate:
        """Issue a server certificate (serverAuth + clientAuth) for DNS names and IP addresses.

        Issuing again for the same name is allowed: the new files replace the old ones and
        the old certificate stays valid until it expires or is revoked, so servers can be
        restarted one at a time. Raises InvalidIdError for a bad name or host,
        AlreadyIssuedError when `name` is a live client identity, CertError on I/O.
        """
        validate_identity(name)
        sans = parse_hosts(hosts)
        validate_days(days)
        now = _utc(now)
        clash = [r for r in self._registry.live(name, now) if r.kind != SERVER_KIND]
        if clash:
            raise AlreadyIssuedError(f"{name!r} is a live {clash[0].kind} identity: choose another server name")
        key = build.generate_key(self.algorithm)
        cert = build.server_certificate(
            self.certificate, self._key, key.public_key(), name=name, org=self.org, sans=sans, days=days, now=now
        )
        return self._deliver(name, SERVER_KIND, cert, key, out_dir)

    def issue_site(
        self, name: str, *, hosts: Sequence[str], out_dir: Path, days: int = 397, now: datetime | None = None
    ) -> IssuedCertificate:
        """Issue an edge site's certificate (kind "site"): its leaf server's, for devices and for the hub link.

        Raises InvalidIdError for a bad name or host, AlreadyIssuedError when `name` already
        holds a live certificate of any kind, CertError on I/O.
        """
        validate_identity(name)
        sans = parse_hosts(hosts)
        validate_days(days)
        now = _utc(now)
        live = self._registry.live(name, now)
        if live:
            raise AlreadyIssuedError(
                f"{name!r} already has a live {live[-1].kind} certificate (serial {live[-1].serial:x}): "
                "choose another site name, or revoke it first (`mahavishnu ca revoke`)"
            )
        key = build.generate_key(self.algorithm)
        cert = build.site_certificate(
            self.certificate, self._key, key.public_key(), name=name, org=self.org, sans=sans, days=days, now=now
        )
        return self._deliver(name, SITE_KIND, cert, key, out_dir)

    def issue_client(
        self,
        identity: str,
        *,
        kind: str = "device",
        out_dir: Path,
        days: int = 365,
        csr_pem: bytes | None = None,
        now: datetime | None = None,
        sync_files: bool = True,
    ) -> IssuedCertificate:
        """Issue a client certificate: CN=<identity>, OU=<kind>, O=<org>, URI mahavishnu:<kind>:<identity>.

        Without `csr_pem` a key of the CA's algorithm is generated and written as key.pem
        (0600); with it, the CSR's key is certified and no key is written. Valid from
        `now` - 5 minutes for `days` days. The CA's own record of the issue is on disk when
        this returns; with `sync_files` False the files written into `out_dir` are not yet,
        and the caller makes them so (`IssuedCertificate.sync`) before handing them out.
        Raises InvalidIdError (identity, kind),
        BadCSRError (CSR unparsable, signature does not verify, CN is not `identity`),
        AlreadyIssuedError when the identity has a live certificate, CertError on I/O.
        """
        validate_identity(identity)
        checked_kind = validate_kind(kind)
        validate_days(days)
        now = _utc(now)
        live = self._registry.live(identity, now)
        if live:
            raise AlreadyIssuedError(
                f"{identity!r} already has a live {live[-1].kind} certificate (serial {live[-1].serial:x}): "
                f"revoke it (`mahavishnu ca revoke {identity}`) or rotate it first"
            )
        return self._issue_client(identity, checked_kind, out_dir, days, csr_pem, now, sync_files)

    def rotate_client(
        self,
        identity: str,
        *,
        out_dir: Path,
        days: int = 365,
        csr_pem: bytes | None = None,
        now: datetime | None = None,
    ) -> IssuedCertificate:
        """Issue a new certificate of the same kind to an identity, keeping its old ones valid.

        The caller revokes the old certificate once the new one is in use. Raises
        NotIssuedError when no client certificate was ever issued to `identity`, and the
        errors of `issue_client`.
        """
        validate_identity(identity)
        validate_days(days)
        now = _utc(now)
        clients = [r for r in self._registry.history(identity) if r.kind != SERVER_KIND]
        if not clients:
            raise NotIssuedError(f"no client certificate was ever issued to {identity!r}: use issue-client")
        if clients[-1].kind == SITE_KIND:  # it would lose its hosts and serverAuth
            raise CertError(
                f"{identity!r} is an edge site: its certificate is not rotated as a client's; "
                "revoke it and add the site again (`mahavishnu site add`)"
            )
        return self._issue_client(identity, clients[-1].kind, out_dir, days, csr_pem, now)

    def revoke(
        self, identity: str, *, reason: str = "unspecified", serial: int | None = None, now: datetime | None = None
    ) -> list[RevocationEntry]:
        """Revoke every unrevoked certificate of `identity` (or only `serial`), then re-sign crl.pem.

        Raises InvalidIdError for a bad identity or reason, NotIssuedError when the
        identity or serial is unknown or already revoked, CertError on I/O.
        """
        validate_identity(identity)
        flag = parse_reason(reason)
        now = _utc(now)
        history = self._registry.history(identity)
        if not history:
            raise NotIssuedError(f"no certificate was ever issued to {identity!r}: see `mahavishnu ca list`")
        targets = [r for r in history if serial is None or r.serial == serial]
        if not targets:
            raise NotIssuedError(f"serial {serial:x} was not issued to {identity!r}: see `mahavishnu ca list`")
        targets = [r for r in targets if not r.revoked]
        if not targets:
            raise NotIssuedError(f"nothing to revoke: every matching certificate of {identity!r} is already revoked")
        entries = [
            RevocationEntry(serial=r.serial, identity=identity, revoked_at=now, reason=flag.name) for r in targets
        ]
        self._save_revocations(self._registry.with_revoked(entries), now)
        return entries

    def refresh_crl(self, now: datetime | None = None) -> Path:
        """Re-sign crl.pem as of `now`; run it before the CRL's next update (30 days) passes."""
        self._write_crl(_utc(now))
        return self.crl_path

    def is_revoked(self, serial: int) -> bool:
        """Whether the certificate with `serial` is revoked."""
        return self._registry.is_revoked(serial)

    def revocations(self) -> list[RevocationEntry]:
        """Every revocation, oldest first."""
        return list(self._registry.revocations)

    def live(self, identity: str, now: datetime | None = None) -> list[IssuedRecord]:
        """The certificates of `identity` that still open the mesh (neither revoked nor expired)."""
        return self._registry.live(identity, _utc(now))

    def issued(self) -> list[IssuedRecord]:
        """Every issued certificate (servers too, kind "server") with its revoked flag, by identity, oldest first."""
        return sorted(self._registry.issued, key=lambda r: r.identity)

    def _issue_client(
        self,
        identity: str,
        kind: str,
        out_dir: Path,
        days: int,
        csr_pem: bytes | None,
        now: datetime,
        sync_files: bool = True,
    ) -> IssuedCertificate:
        key: PrivateKey | None = None
        if csr_pem is None:
            key = build.generate_key(self.algorithm)
            public: PublicKey = key.public_key()
        else:
            public = build.csr_public_key(csr_pem, identity)
        cert = build.client_certificate(
            self.certificate, self._key, public, identity=identity, kind=kind, org=self.org, days=days, now=now
        )
        return self._deliver(identity, kind, cert, key, out_dir, sync_files)

    def _deliver(
        self,
        identity: str,
        kind: str,
        cert: x509.Certificate,
        key: PrivateKey | None,
        out_dir: Path,
        sync: bool = True,
    ) -> IssuedCertificate:
        """Write cert.pem, key.pem (if any) and ca.pem into `out_dir`, then record the issue."""
        ensure_dir(out_dir)
        key_path = None if key is None else write_private(out_dir / "key.pem", build.key_pem(key), sync=sync)
        cert_path = write_atomic(out_dir / "cert.pem", build.cert_pem(cert), sync=sync)
        ca_path = write_atomic(out_dir / "ca.pem", build.cert_pem(self.certificate), sync=sync)
        record = IssuedRecord(
            identity=identity,
            kind=kind,
            serial=cert.serial_number,
            not_after=cert.not_valid_after_utc,
            fingerprint_sha256=build.fingerprint(cert),
        )
        append_line(self.directory / ISSUED, issued_line(record))
        self._registry = self._registry.with_issued(record)
        return IssuedCertificate(
            identity=identity,
            kind=kind,
            serial=record.serial,
            not_after=record.not_after,
            cert_path=cert_path,
            key_path=key_path,
            ca_path=ca_path,
            fingerprint_sha256=record.fingerprint_sha256,
        )

    def _save_revocations(self, registry: Registry, now: datetime) -> None:
        """Write revocations.json and re-sign the CRL, then adopt `registry`."""
        write_json(self.directory / REVOCATIONS, registry.revocations_json())
        self._registry = registry
        self._write_crl(now)

    def _write_crl(self, now: datetime) -> None:
        revoked = [
            build.Revoked(serial=r.serial, revoked_at=r.revoked_at, reason=parse_reason(r.reason))
            for r in self._registry.revocations
        ]
        crl = build.certificate_revocation_list(
            self.certificate, self._key, revoked, number=self._next_crl_number(), now=now
        )
        write_atomic(self.crl_path, build.crl_pem(crl))

    def _next_crl_number(self) -> int:
        """One more than the published CRL's number, so relying parties see it as newer."""
        try:
            crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
            return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
        except (OSError, ValueError, x509.ExtensionNotFound):
            return 1
