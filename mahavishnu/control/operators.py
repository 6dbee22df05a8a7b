"""People who query the mesh: an operator certificate (OPS account) and a role in roles.json.

Both doors name a caller by its certificate: the NATS server passes on the certificate's
name (`mahavishnu:cert:<serial>`, from its URI SAN) and the HTTP door reads the same URI
SAN from the client certificate of the TLS connection. Either way the CA registry says
whose it is, of what kind, and whether it is revoked or expired, and roles.json the role.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from certs import (
    CertificateAuthority,
    IssuedCertificate,
    IssuedRecord,
    certificate_uri,
    issued_records,
    read_revocations,
    validate_identity,
)
from certs.authority import REVOCATIONS
from core.config import Settings
from core.errors import MahavishnuError
from mahavishnu.runtime.home import Home, reload_server
from mahavishnu.runtime.provisioning import write_users
from projections.authz import ROLES, Caller, Refusal

CERTIFICATE_NAME_PREFIX = certificate_uri(0).removesuffix("0")  # "mahavishnu:cert:"

REREAD_S = 60.0  # the longest a change that leaves a file's inode, size and mtime alone could go unseen


def roles(home: Home) -> dict[str, str]:
    """identity -> role, from roles.json ({} when there is none)."""
    try:
        data = json.loads(home.roles_file.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise MahavishnuError(f"{home.roles_file} is not valid JSON ({exc}): restore it or remove it") from exc
    return {str(k): str(v) for k, v in data.items()}


def add(home: Home, settings: Settings, identity: str, role: str, *, out_dir: Path) -> IssuedCertificate:
    """Issue an operator certificate with `role`; the server accepts it after the reload."""
    validate_identity(identity)
    if role not in ROLES:
        raise MahavishnuError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    ca = CertificateAuthority.load(home.ca_dir)
    issued = ca.issue_client(identity, kind="operator", out_dir=out_dir, days=settings.certs.client_days)
    _write_roles(home, {**roles(home), identity: role})
    write_users(home, ca)
    reload_server(home)
    return issued


def caller_of(record: IssuedRecord, role: str | None, now: datetime) -> Caller | Refusal:
    """Who a certificate makes its holder (pure): a live operator's certificate with a role, or why not."""
    who, serial = record.identity, f"{record.serial:x}"
    if record.kind != "operator":
        kind = "a device" if record.kind == "device" else f"a {record.kind}"
        return Refusal(403, f"{who} presented {kind} certificate: only operators may query", actor=who)
    if record.revoked:
        return Refusal(401, f"the certificate {serial} of {who} is revoked: it no longer opens the mesh", actor=who)
    if not record.is_live(now):
        return Refusal(401, f"the certificate {serial} of {who} expired on {record.not_after:%Y-%m-%d}", actor=who)
    if not role:
        return Refusal(403, f"operator {who} has no role: give it one with `mahavishnu operator add`", actor=who)
    return Caller(who, role)


class _Registry:
    """The CA's issued records with their roles, by server user name, kept current cheaply.

    Every query and every connection event asks. issued.jsonl only grows, so a new
    certificate (an enrolment) costs reading and adding its line; a revocation or a role
    change (told by revocations.json's and roles.json's inode, size and modification time)
    rebuilds the whole table, and so does the passing of REREAD_S, which bounds what a
    change none of those show (a reused inode, same size, same clock tick) could go
    unseen. Expiry is checked by the callers, at each call.
    """

    def __init__(self, home: Home) -> None:
        self.home = home
        self.watched = (home.ca_dir / REVOCATIONS, home.roles_file)
        self.seen: tuple[tuple[int, int, int] | None, ...] | None = None
        self.read_at = 0.0
        self.people: dict[str, tuple[IssuedRecord, str | None]] = {}
        self.counted = 0  # how many of the issued records are in `people`
        self.users: list[str] = []  # the keys of `people` in the order they came: what is new is at the end
        self.rebuilt = 0  # how many times `people` was built anew: a view of it built before is stale
        self.revoked: frozenset[int] = frozenset()
        self.roles: dict[str, str] = {}

    def lookup(self, user: str) -> tuple[IssuedRecord, str | None] | None:
        """The record of the certificate named `user` (mahavishnu:cert:<serial>) and its holder's role."""
        return self.everyone().get(user)

    def everyone(self) -> dict[str, tuple[IssuedRecord, str | None]]:
        """Every certificate by its server user name, with its holder's role."""
        current = tuple(file_version(path) for path in self.watched)  # noted before reading: a change meanwhile rereads
        records = issued_records(self.home.ca_dir)
        stale = current != self.seen or time.monotonic() - self.read_at > REREAD_S
        if stale or len(records) < self.counted:  # revoked, a role changed, or another registry file
            self.read_at = time.monotonic()
            self.roles = roles(self.home)
            self.revoked = frozenset(entry.serial for entry in read_revocations(self.home.ca_dir))
            self.people, self.users, self.counted = {}, [], 0
            self.seen = current
            self.rebuilt += 1
        for record in records[self.counted :]:
            if record.serial in self.revoked:
                record = dataclasses.replace(record, revoked=True)
            user = certificate_uri(record.serial)
            if user not in self.people:
                self.users.append(user)
            self.people[user] = (record, self.roles.get(record.identity))
        self.counted = len(records)
        return self.people


def resolver(home: Home) -> Callable[[str], Caller | None]:
    """Maps a server user name (mahavishnu:cert:<serial>) to the live operator behind it and its role."""
    registry = _Registry(home)

    def resolve(user: str) -> Caller | None:
        found = registry.lookup(user)
        caller = caller_of(*found, datetime.now(UTC)) if found else None
        return caller if isinstance(caller, Caller) else None

    return resolve


def certificate_name(pem: str) -> str | None:
    """The `mahavishnu:cert:<serial>` URI SAN of a PEM certificate (the name the NATS server uses), if any."""
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
        uris = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    names = uris.get_values_for_type(x509.UniformResourceIdentifier)
    return next((name for name in names if name.startswith(CERTIFICATE_NAME_PREFIX)), None)


def certificate_resolver(home: Home) -> Callable[[str], Caller | Refusal]:
    """Maps an HTTP client certificate (PEM, already verified against the mesh CA by the TLS handshake) to a caller.

    Refused: a certificate the registry does not know, one that is not an operator's
    (a device's, the control services'), a revoked or expired one, an operator without a role.
    """
    registry = _Registry(home)

    def resolve(pem: str) -> Caller | Refusal:
        name = certificate_name(pem)
        found = registry.lookup(name) if name else None
        if found is None:
            return Refusal(
                401, "the client certificate is not in the mesh CA's registry: use an operator's certificate"
            )
        return caller_of(*found, datetime.now(UTC))

    return resolve


def file_version(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or written (inode, size, mtime); None when it is missing."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _write_roles(home: Home, table: dict[str, str]) -> None:
    tmp = home.roles_file.with_name(home.roles_file.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(table, handle, indent=2, sort_keys=True)
    os.replace(tmp, home.roles_file)


def identifier(home: Home) -> Callable[[str], str]:
    """Maps a server user name (mahavishnu:cert:<serial>) to '<identity>' (any kind); the name itself if unknown.

    Asked for every connection and disconnection: a dictionary lookup, the CA's registry
    being reread only when it changed (a reconnecting fleet must not reload it per device).
    """
    registry = _Registry(home)

    def identify(user: str) -> str:
        found = registry.lookup(user)
        return found[0].identity if found else user

    return identify


def devices_by_user(home: Home) -> Callable[[], dict[str, str]]:
    """Maps each device certificate's server user name (mahavishnu:cert:<serial>) to its device id.

    Current at every call (devices enrolled while `up` runs are counted), reread only after a change.
    """
    registry = _Registry(home)
    found: dict[str, str] = {}
    seen = (-1, 0)  # (registry.rebuilt, how many of its records `found` has looked at)

    def devices() -> dict[str, str]:
        # Asked at every connection event of a reconnecting fleet: only what is new is looked at.
        nonlocal found, seen
        people = registry.everyone()
        if seen[0] != registry.rebuilt:
            found, seen = {}, (registry.rebuilt, 0)
        for user in registry.users[seen[1] :]:
            record = people[user][0]
            if record.kind == "device":
                found[user] = record.identity
        seen = (registry.rebuilt, len(registry.users))
        return found

    return devices
