"""Whom the auth callout admits, and with which permissions (pure).

The server has already verified the client's certificate chain against the mesh CA; what
is left to decide is whose certificate it is, whether it is still good, and what that
identity may do. Three kinds are admitted here:
  - NATS devices, over the client listener, with `device_user`'s permissions;
  - edge sites' leaf links, with `site_user`'s: nats-server sends every leaf connection
    that its leafnode block does not authorize itself to the callout, even one it mapped
    to a configured user, so sites are admitted here with the same rules as before;
  - fleet claims' bootstrap certificates, over the client listener, with `claim_user`'s
    permissions (ask the provisioning service, nothing else): the certificate ends when
    the claim expires, and a revoked claim's is on the CA's list.
Every other identity (control, operators, the MQTT bridge) is a user of the server's
configuration, in an account the callout is not asked about; a certificate of theirs that
reaches the callout is one the configuration no longer lists (revoked, or not yet known).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from mahavishnu.control.permissions import device_user, site_user
from mahavishnu.gateways.mqtt import devices as mqtt
from mahavishnu.identity.claims import claim_user
from mahavishnu.identity.errors import BadRequest
from mahavishnu.runtime.natsconf import User

ACCOUNT = "MESH"  # where admitted devices live, beside the streams they use
DELEGATED = "CALLOUT"  # an account without users: the only one whose users the server would ask us about
_URI = re.compile(r"mahavishnu:(?P<kind>[a-z]+):(?P<value>[A-Za-z0-9_.\-]+)")


@dataclass(frozen=True)
class Request:
    """What the server tells us about a client that is connecting (from its signed request)."""

    server_id: str  # the server that asks: its response must name it
    user_nkey: str  # the key the server made for this connection: the user we admit is this key
    client_type: str  # "nats", "mqtt", "websocket" for a client ("" for a leaf link)
    client_id: int  # the connection's id on that server (for logs and for cutting it off later)
    name: str  # the name the client gave itself (nats-py's `name`), untrusted
    certificate: bytes | None  # the client's verified certificate (PEM), None when it presented none
    kind: str = "Client"  # "Client", or "Leafnode" for an edge site's link
    mqtt_client_id: str = ""  # the MQTT client id it connects with (untrusted), "" over NATS


@dataclass(frozen=True)
class Fleet:
    """What the decision needs to know of the fleet: revoked certificates and the MQTT-only devices."""

    revoked: frozenset[int]
    mqtt_devices: frozenset[str]


@dataclass(frozen=True)
class Grant:
    """Admit the connection as `user` (its name: the certificate's URI SAN) until `expires`."""

    identity: str  # the device id, the site's name, or the claim's id
    kind: str  # "device", "site" or "claim"
    serial: int
    user: User
    expires: datetime
    account: str = ACCOUNT  # where the server places the user: MESH, or MQTT for an MQTT device


@dataclass(frozen=True)
class Refusal:
    """Refuse the connection; `reason` goes back to the server (and its log), so it names no secret."""

    reason: str
    who: str = ""  # the certificate's identity when one could be read, for our own log


def parse_request(claims: dict[str, Any]) -> Request:
    """The parts of an authorization request's claims that matter (pure); BadRequest when they are missing."""
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != "authorization_request":
        raise BadRequest("not an authorization request")
    server = nats.get("server_id") or {}
    client = nats.get("client_info") or {}
    tls = nats.get("client_tls") or {}
    chains = tls.get("verified_chains") or []
    if not server.get("id") or not nats.get("user_nkey"):
        raise BadRequest("the request names no server or no user key")
    leaf = chains[0][0] if chains and chains[0] else None
    return Request(
        server_id=str(server["id"]),
        user_nkey=str(nats["user_nkey"]),
        client_type=str(client.get("type", "")),
        client_id=int(client.get("id", 0)),
        name=str(client.get("name", "")),
        certificate=leaf.encode() if isinstance(leaf, str) else None,
        kind=str(client.get("kind", "Client")),
        mqtt_client_id=str(client.get("mqtt_id", "")),
    )


def decide(request: Request, fleet: Fleet, now: datetime | None = None) -> Grant | Refusal:
    """Admit a live NATS device, an edge site's link or a claim's bootstrap certificate with its own permissions;
    refuse everything else, saying why."""
    if request.certificate is None:
        return Refusal("no verified client certificate: connect with the certificate the mesh issued you")
    try:
        certificate = x509.load_pem_x509_certificate(request.certificate)
    except ValueError:
        return Refusal("the client certificate cannot be read")
    names = _uris(certificate)
    kind, identity = next(((k, v) for k, v in names.items() if k != "cert"), ("", ""))
    who = f"{kind}:{identity}" if kind else ""
    if kind not in ("device", "site", "claim"):
        # An operator's or control certificate the configuration does not list: revoked, or
        # not yet known to the server (`mahavishnu up` writes the users it knows at start).
        return Refusal(f"certificate {who or 'without a mesh identity'} is not a user of this server", who)
    serial = certificate.serial_number
    if names.get("cert") != f"{serial:x}":
        return Refusal(f"certificate of {who} names another serial than its own", who)
    if serial in fleet.revoked:
        return Refusal(f"certificate {serial:x} of {who} is revoked", who)
    expires = certificate.not_valid_after_utc
    if expires <= (now or datetime.now(UTC)):
        return Refusal(f"certificate {serial:x} of {who} has expired", who)
    if kind == "site":
        if request.kind != "Leafnode":
            return Refusal(f"{who} is an edge site: it may only link its leaf server", who)
        return Grant(identity, kind, serial, site_user(serial, identity), expires)
    if kind == "device" and identity in fleet.mqtt_devices:
        if request.kind != "Client" or request.client_type != "mqtt":
            return Refusal(f"{who} is an MQTT device: it connects to the MQTT listener only", who)
        wrong_id = mqtt.client_id_refusal(identity, request.mqtt_client_id)
        if wrong_id is not None:
            return Refusal(wrong_id, who)
        return Grant(identity, kind, serial, mqtt.device_user(identity, serial), expires, account=mqtt.MQTT_ACCOUNT)
    if request.kind != "Client" or request.client_type not in ("", "nats"):
        over = request.client_type or request.kind.lower()
        what = "a claim's bootstrap certificate" if kind == "claim" else "a NATS device"
        return Refusal(f"{who} is {what}: it may not connect over {over}", who)
    if kind == "claim":
        return Grant(identity, kind, serial, claim_user(identity, serial), expires)
    return Grant(identity, kind, serial, device_user(identity, serial), expires)


def refusal_audit(request: Request, refusal: Refusal) -> dict[str, Any]:
    """The audit record (AuditTrail.record's arguments) of a refusal that names an identity (pure).

    The MQTT client id is the client's own choice, so it is cut short: it may be up to 64 KiB.
    """
    identity = refusal.who.partition(":")[2] or "unknown"
    details: dict[str, Any] = {
        "who": refusal.who,
        "reason": refusal.reason,
        "over": request.client_type or request.kind.lower(),
        "connection": request.client_id,
        "server": request.server_id,
    }
    if request.mqtt_client_id:
        details["client_id"] = request.mqtt_client_id[:128]
    return {
        "actor": identity,
        "category": "identity",
        "action": "connection.refused",
        "target": identity,
        "outcome": "denied",
        "details": details,
    }


def _uris(certificate: x509.Certificate) -> dict[str, str]:
    """The certificate's mahavishnu:<kind>:<value> URI SANs, by kind."""
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return {}
    found: dict[str, str] = {}
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        match = _URI.fullmatch(uri)
        if match:
            found.setdefault(match["kind"], match["value"])
    return found


def user_claims(grant: Grant, user_nkey: str) -> dict[str, Any]:
    """The user JWT's claims for a grant (pure): the device's permissions, its account, until its certificate ends."""
    user = grant.user
    nats: dict[str, Any] = {
        "pub": _rules(user.publish_allow, user.publish_deny),
        "sub": _rules(user.subscribe_allow, user.subscribe_deny),
        # nats-server's "no limit" (-1); a missing limit would be read as zero. (In server
        # configuration mode the server applies a callout user's permissions, connection
        # types and expiry, but not these limits: measured, and so in its auth_callout.go.)
        "subs": -1,
        "data": -1,
        "payload": -1,
        "allowed_connection_types": list(user.connection_types or ("STANDARD",)),
        "type": "user",
        "version": 2,
    }
    if user.allow_responses:
        nats["resp"] = {"max": 1, "ttl": 0}
    return {
        "sub": user_nkey,
        "name": user.name,  # the server logs and reports the connection under this name
        "aud": grant.account,  # in server-configuration mode the audience places the user in its account
        "exp": int(grant.expires.timestamp()),  # the server disconnects it when its certificate ends
        "nats": nats,
    }


def _rules(allow: tuple[str, ...] | None, deny: tuple[str, ...]) -> dict[str, list[str]]:
    """One direction's permissions as a user JWT holds them: no allow list means everything not denied."""
    rules = {} if allow is None else {"allow": list(allow)}
    return rules | ({"deny": list(deny)} if deny else {})


def response_claims(request: Request, *, user_jwt: str = "", error: str = "") -> dict[str, Any]:
    """The authorization response's claims (pure): the user JWT, or the error that refuses the connection."""
    nats: dict[str, Any] = {"type": "authorization_response", "version": 2}
    if user_jwt:
        nats["jwt"] = user_jwt
    if error:
        nats["error"] = error
    return {"sub": request.user_nkey, "aud": request.server_id, "nats": nats}
