"""A claim as a device holds it, and the ids a claim may name (pure; the standard library only).

A device runs `mahavishnu agent provision` with the edge install (nats-py and msgspec, no
`cryptography`), so this module reads and writes the claim file with nothing but the
standard library. The file is JSON, 0600:

    {"format": "mahavishnu-claim/1", "claim_id": "claim-…", "servers": ["tls://…"],
     "ca_pem": "…", "cert_pem": "…", "key_pem": "…",
     "prefix": "sensor-", "count": 100, "expires_at": "2027-03-08T09:00:00+00:00", "site": ""}

It holds the bootstrap certificate and key (kind "claim"), which may do nothing but ask up's
provisioning service for a device certificate. What the file says of the claim (prefix,
count, expiry) is for the device's convenience: the mesh decides from its own events.

The naming rule is here too, because both sides use it: a claim with prefix P and count N
names P + the index 0 .. N-1, zero-padded to the width of N-1 ("sensor-00" .. "sensor-99").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.errors import MahavishnuError

FORMAT = "mahavishnu-claim/1"
MAX_COUNT = 100_000  # a batch; the fleet issue's size
_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]*")
_IDENTITY_MAX = 63  # certs.names.IDENTITY_RULE: a device id is at most 63 characters
_CLAIM_ID = re.compile(r"claim-[a-z0-9]{1,57}")
_PEM = {"ca_pem": "CERTIFICATE", "cert_pem": "CERTIFICATE", "key_pem": "PRIVATE KEY"}


class ClaimError(MahavishnuError):
    """A claim's naming rule is wrong, or a claim file is malformed, foreign or tampered with."""


@dataclass(frozen=True)
class ClaimFile:
    claim_id: str
    servers: tuple[str, ...]
    ca_pem: str
    cert_pem: str
    key_pem: str
    prefix: str
    count: int
    expires_at: datetime
    site: str = ""


def width(count: int) -> int:
    """How many digits a claim of `count` devices pads its indexes to (pure)."""
    return len(str(max(count - 1, 0)))


def check_naming(prefix: str, count: int) -> None:
    """ClaimError unless prefix + every padded index is a device id (certs.names.IDENTITY_RULE)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise ClaimError(f"a claim names 1 to {MAX_COUNT} devices, not {count!r}: give --count in that range")
    if not _PREFIX.fullmatch(prefix) or len(prefix) + width(count) > _IDENTITY_MAX:
        raise ClaimError(
            f"prefix {prefix!r} cannot start a device id: use a-z, 0-9 and '-', starting with a letter or digit, "
            f"at most {_IDENTITY_MAX - width(count)} characters for {count} devices (e.g. sensor-)"
        )


def device_id(prefix: str, index: int, count: int) -> str:
    """The id a claim names at `index` (pure): prefix + the index zero-padded to width(count)."""
    return f"{prefix}{index:0{width(count)}d}"


def may_name(prefix: str, count: int, candidate: str) -> bool:
    """Whether a claim with `prefix` and `count` names `candidate` (pure): exactly one of its padded ids."""
    digits = candidate.removeprefix(prefix)
    return (
        candidate.startswith(prefix)
        and len(digits) == width(count)
        and digits.isascii()
        and digits.isdigit()
        and int(digits) < count
    )


def named(prefix: str, count: int) -> str:
    """The ids a claim names, for messages (pure): "sensor-00 .. sensor-99"."""
    first, last = device_id(prefix, 0, count), device_id(prefix, count - 1, count)
    return first if count == 1 else f"{first} .. {last}"


def render(claim: ClaimFile) -> str:
    """The claim file's text (pure)."""
    document = {
        "format": FORMAT,
        "claim_id": claim.claim_id,
        "servers": list(claim.servers),
        "ca_pem": claim.ca_pem,
        "cert_pem": claim.cert_pem,
        "key_pem": claim.key_pem,
        "prefix": claim.prefix,
        "count": claim.count,
        "expires_at": claim.expires_at.isoformat(),
        "site": claim.site,
    }
    return json.dumps(document, indent=2) + "\n"


def parse(text: str, where: str) -> ClaimFile:
    """The claim in a claim file's text (pure); ClaimError in one line saying what is wrong with it.

    This checks the file's shape only; whether its certificate is its CA's and names its
    claim is `agent provision`'s next check (with `cryptography` or openssl).
    """
    try:
        document = json.loads(text)
    except ValueError:
        raise ClaimError(
            f"{where} is not a claim file (not JSON): pass the file `mahavishnu fleet claim create` wrote"
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ClaimError(f'{where} is not a claim file (no "format": "{FORMAT}"): pass the file a claim made')
    claim_id = _text(document, "claim_id", where)
    if not _CLAIM_ID.fullmatch(claim_id):
        raise ClaimError(f"{where} names no valid claim id ({claim_id!r}): the file was altered; ask for a new one")
    servers = document.get("servers")
    if not isinstance(servers, list) or not servers or not all(isinstance(s, str) and s for s in servers):
        raise ClaimError(f"{where} names no server to ask: the file was altered; ask for a new one")
    for field, label in _PEM.items():
        pem = _text(document, field, where)
        if f"-----BEGIN {label}-----" not in pem or f"-----END {label}-----" not in pem:
            raise ClaimError(f"{where}: {field} is no PEM {label.lower()}: the file was altered; ask for a new one")
    prefix, count = _text(document, "prefix", where), document.get("count")
    try:
        check_naming(prefix, count)  # type: ignore[arg-type]  # checked there, whatever JSON held
        expires = datetime.fromisoformat(_text(document, "expires_at", where))
    except (ClaimError, ValueError) as exc:
        raise ClaimError(f"{where} describes no valid claim ({exc}): the file was altered; ask for a new one") from None
    return ClaimFile(
        claim_id=claim_id,
        servers=tuple(servers),
        ca_pem=document["ca_pem"],
        cert_pem=document["cert_pem"],
        key_pem=document["key_pem"],
        prefix=prefix,
        count=int(count),  # type: ignore[arg-type]
        expires_at=expires if expires.tzinfo else expires.replace(tzinfo=UTC),
        site=str(document.get("site") or ""),
    )


def _text(document: dict[str, Any], field: str, where: str) -> str:
    value = document.get(field)
    if not isinstance(value, str) or not value:
        raise ClaimError(f"{where} has no {field}: the file is damaged or altered; ask for a new claim file")
    return value
