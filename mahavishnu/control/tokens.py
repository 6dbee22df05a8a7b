"""Bearer tokens for the HTTP door: one per operator, shown once, kept only as a hash (tokens.json, 0600)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable

from core.errors import MahavishnuError
from mahavishnu.control import operators
from mahavishnu.runtime.home import Home
from projections.authz import Caller


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _table(home: Home) -> dict[str, str]:
    path = home.root / "tokens.json"
    try:
        return {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        return {}


def issue(home: Home, identity: str) -> str:
    """A new token for the operator `identity` (replacing its old one); MahavishnuError for an unknown operator."""
    if identity not in operators.roles(home):
        raise MahavishnuError(f"no operator {identity!r}: add one with `mahavishnu operator add {identity} --role R`")
    token = "mvt_" + secrets.token_urlsafe(32)
    table = {digest: who for digest, who in _table(home).items() if who != identity}
    table[_digest(token)] = identity
    path = home.root / "tokens.json"
    tmp = path.with_name("tokens.json.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(table, handle)
    os.replace(tmp, path)
    return token


def authenticator(home: Home) -> Callable[[str], Caller | None]:
    """Maps a bearer token to its operator and role, as tokens.json and roles.json say now.

    Both files are read again only when they change (their version is looked at on every
    request, noted before reading), so a dashboard's polling costs two stats, not two reads.
    """
    watched = (home.root / "tokens.json", home.roles_file)
    seen: tuple[tuple[int, int, int] | None, ...] | None = None
    tables: tuple[dict[str, str], dict[str, str]] = ({}, {})

    def authenticate(token: str) -> Caller | None:
        nonlocal seen, tables
        current = tuple(operators.file_version(path) for path in watched)
        if current != seen:
            tables, seen = (_table(home), operators.roles(home)), current
        identity = tables[0].get(_digest(token))
        role = tables[1].get(identity or "")
        return Caller(identity, role) if identity and role else None

    return authenticate
