"""People who query the mesh: an operator certificate (OPS account) and a role in roles.json."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from certs import CertificateAuthority, IssuedCertificate, certificate_uri, validate_identity
from core.config import Settings
from core.errors import MahavishnuError
from mahavishnu.home import Home, reload_server, write_users
from projections.authz import ROLES, Caller


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
    """Maps a server user name (mahavishnu:cert:<serial>) to the live operator behind it and its role."""

    def resolve(user: str) -> Caller | None:
        now = datetime.now(UTC)
        for record in CertificateAuthority.load(home.ca_dir).issued():
            if record.kind == "operator" and record.is_live(now) and certificate_uri(record.serial) == user:
                role = roles(home).get(record.identity)
                return Caller(record.identity, role) if role else None
        return None

    return resolve


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
