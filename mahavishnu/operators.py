"""People who query the mesh: an operator certificate (OPS account) and a role in roles.json."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from certs import CertificateAuthority, IssuedCertificate, IssuedRecord, certificate_uri, validate_identity
from certs.authority import ISSUED, REVOCATIONS
from core.config import Settings
from core.errors import MahavishnuError
from mahavishnu.home import Home, reload_server, write_users
from projections.authz import ROLES, Caller

REREAD_S = 1.0  # resolver(): the longest a change to the CA registry or roles.json can go unseen


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


def resolver(home: Home) -> Callable[[str], Caller | None]:
    """Maps a server user name (mahavishnu:cert:<serial>) to the live operator behind it and its role.

    Every query asks, so the CA's registry and roles.json are read again only when one of
    their files changed (an operator added, a certificate revoked, a role changed), told by
    its inode, size and modification time, and at least every REREAD_S seconds, which bounds
    what a change that none of those show (a reused inode, same size, same clock tick) could
    go unseen. Expiry is checked at each call.
    """
    watched = (home.ca_dir / ISSUED, home.ca_dir / REVOCATIONS, home.roles_file)
    seen: tuple[tuple[int, int, int] | None, ...] | None = None
    read_at = 0.0
    people: dict[str, tuple[IssuedRecord, str | None]] = {}

    def resolve(user: str) -> Caller | None:
        nonlocal seen, read_at, people
        current = tuple(_version(path) for path in watched)  # noted before reading: a change meanwhile rereads
        if current != seen or time.monotonic() - read_at > REREAD_S:
            read_at = time.monotonic()
            table = roles(home)
            people = {
                certificate_uri(record.serial): (record, table.get(record.identity))
                for record in CertificateAuthority.load(home.ca_dir).issued()
                if record.kind == "operator"
            }
            seen = current
        record, role = people.get(user, (None, None))
        if record is None or role is None or not record.is_live(datetime.now(UTC)):
            return None
        return Caller(record.identity, role)

    return resolve


def _version(path: Path) -> tuple[int, int, int] | None:
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
    """Maps a server user name (mahavishnu:cert:<serial>) to '<identity>' (any kind); the name itself if unknown."""

    def identify(user: str) -> str:
        for record in CertificateAuthority.load(home.ca_dir).issued():
            if certificate_uri(record.serial) == user:
                return record.identity
        return user

    return identify
