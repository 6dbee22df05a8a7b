"""Pure validation of what goes into a certificate: identities, kinds, hosts, reasons.

Nothing here touches a file or a key. A malformed value raises `InvalidIdError` (a bad
number of days, `CertError`) with the rule in the message, so a refused command line
says how to fix it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Final, Literal, cast, get_args

from cryptography import x509

from certs.errors import CertError, InvalidIdError

KeyAlgorithm = Literal["ecdsa-p256", "ed25519"]
ALGORITHMS: Final[tuple[str, ...]] = get_args(KeyAlgorithm)

# system: reads the server's $SYS events; claim: a fleet claim's bootstrap identity, which may
# only ask up's provisioning service for a device certificate (mahavishnu.identity.claims)
ClientKind = Literal["device", "control", "operator", "system", "claim"]
CLIENT_KINDS: Final[tuple[str, ...]] = get_args(ClientKind)
CLAIM_KIND: Final = "claim"
SERVER_KIND: Final = "server"
# An edge site's leaf nats-server: one certificate serves its device listener (serverAuth)
# and dials the hub's leaf node listener and its own server (clientAuth).
SITE_KIND: Final = "site"

IDENTITY_RULE: Final = "^[a-z0-9][a-z0-9-]{0,62}$"
_IDENTITY = re.compile(IDENTITY_RULE)  # used with fullmatch, so "$" cannot accept a trailing newline
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

# Accept both the Python names (key_compromise) and the RFC 5280 names (keyCompromise);
# removeFromCRL only has a meaning in delta CRLs, which we do not publish.
_REVOCATION_REASONS: Final = tuple(f for f in x509.ReasonFlags if f is not x509.ReasonFlags.remove_from_crl)
_REASONS: Final[dict[str, x509.ReasonFlags]] = {
    **{flag.name: flag for flag in _REVOCATION_REASONS},
    **{flag.value: flag for flag in _REVOCATION_REASONS},
}


def validate_identity(identity: str) -> str:
    """Return `identity` unchanged if it matches ^[a-z0-9][a-z0-9-]{0,62}$.

    Raises InvalidIdError otherwise. Why so strict: the identity is a certificate CN, a
    directory name, a NATS subject token and part of a URI, and must be safe in all four.
    """
    if not isinstance(identity, str) or _IDENTITY.fullmatch(identity) is None:
        raise InvalidIdError(
            f"invalid identity {identity!r}: use 1-63 characters from a-z, 0-9 and '-', "
            f"starting with a letter or digit ({IDENTITY_RULE})"
        )
    return identity


def validate_kind(kind: str) -> ClientKind:
    """Return `kind` if it is a client kind (device, control, operator, system, claim); raises InvalidIdError."""
    if kind not in CLIENT_KINDS:
        raise InvalidIdError(f"invalid kind {kind!r}: use one of {', '.join(CLIENT_KINDS)}")
    return cast(ClientKind, kind)


def validate_algorithm(algorithm: str) -> KeyAlgorithm:
    """Return `algorithm` if it is a supported key algorithm; raises InvalidIdError."""
    if algorithm not in ALGORITHMS:
        raise InvalidIdError(f"invalid key algorithm {algorithm!r}: use one of {', '.join(ALGORITHMS)}")
    return cast(KeyAlgorithm, algorithm)


def validate_days(days: int) -> int:
    """Return `days` if it is a whole number of days, 1 or more; raises CertError."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise CertError(f"invalid validity {days!r}: give a whole number of days, 1 or more")
    return days


def validate_org(org: str) -> str:
    """Return `org` if it is a usable organisation name (1-64 printable characters); raises InvalidIdError."""
    if not 1 <= len(org) <= 64 or not org.isprintable():
        raise InvalidIdError(f"invalid organisation {org!r}: use 1-64 printable characters")
    return org


def parse_host(host: str) -> x509.GeneralName:
    """Turn a host into a SAN entry: an IPv4/IPv6 address becomes IPAddress, a DNS name DNSName.

    A DNS name may start with one wildcard label ("*.mesh.local"). Raises InvalidIdError.
    """
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.removesuffix(".").lower()
    labels = name.split(".")
    if labels[0] == "*" and len(labels) > 1:
        labels = labels[1:]
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise InvalidIdError(
            f"invalid host {host!r}: give a DNS name (letters, digits, '-', dot-separated) or an IPv4/IPv6 address"
        )
    return x509.DNSName(name)


def parse_hosts(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """SAN entries for `hosts`, in order and without duplicates; raises InvalidIdError if empty or malformed."""
    if isinstance(hosts, str) or not hosts:
        raise InvalidIdError("a server certificate needs at least one host: give --host NAME-OR-IP")
    entries: list[x509.GeneralName] = []
    for host in hosts:
        entry = parse_host(host)
        if entry not in entries:
            entries.append(entry)
    return entries


def parse_reason(reason: str) -> x509.ReasonFlags:
    """The CRL reason for `reason` ("key_compromise" or "keyCompromise", ...); raises InvalidIdError."""
    flag = _REASONS.get(reason)
    if flag is None:
        names = ", ".join(flag.name for flag in _REVOCATION_REASONS)
        raise InvalidIdError(f"invalid revocation reason {reason!r}: use one of {names}")
    return flag


def client_uri(kind: str, identity: str) -> str:
    """The URI SAN naming a client: "mahavishnu:<kind>:<identity>"."""
    return f"mahavishnu:{kind}:{identity}"


def certificate_uri(serial: int) -> str:
    """The URI SAN naming one certificate: "mahavishnu:cert:<serial in hex>"."""
    return f"mahavishnu:cert:{serial:x}"
