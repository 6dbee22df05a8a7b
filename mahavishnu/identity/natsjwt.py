"""NATS JWTs (nats-io/jwt v2) as the auth callout exchanges them: encoding signed claims, reading claims (pure).

A NATS JWT is three base64url parts: a fixed header, the claims as JSON, and the
ed25519 signature (an nkey's) of the first two. The server signs its authorization
requests with its own nkey and checks ours against the issuer account key of its
configuration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from typing import Any

import nkeys

from mahavishnu.identity.errors import MalformedToken

HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_HEADER_PART = base64.urlsafe_b64encode(json.dumps(HEADER, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: dict[str, Any], signer: nkeys.KeyPair, *, now: float | None = None) -> str:
    """`claims` signed by `signer` (an account nkey), with iss, iat and jti filled in."""
    body = {**claims, "iss": signer.public_key.decode(), "iat": int(now if now is not None else time.time())}
    # nats-io/jwt names a JWT by the hash of its claims (jti); the server does not check it,
    # but tools that list JWTs use it as their id.
    body["jti"] = base64.b32encode(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()).decode()
    body["jti"] = body["jti"].rstrip("=")
    payload = f"{_HEADER_PART}.{_b64(json.dumps(body, separators=(',', ':')).encode())}"
    return f"{payload}.{_b64(signer.sign(payload.encode()))}"


def claims_of(token: str | bytes) -> dict[str, Any]:
    """The claims of a NATS JWT, unverified; MalformedToken when it is not one.

    The authorization requests reach us on a subject only the server and our own control
    identity may publish to, and a forged request gains nothing: the server accepts a
    response only for the user key and server id it put in its own request.
    """
    text = token.decode() if isinstance(token, bytes) else token
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise MalformedToken("not a JWT: expected three dot-separated parts")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedToken(f"not a JWT: {exc.__class__.__name__}") from exc
    if header.get("alg") != HEADER["alg"] or not isinstance(claims, dict):
        raise MalformedToken(f"not a NATS JWT (alg {header.get('alg')!r})")
    return claims


def new_account_seed() -> bytes:
    """A fresh account nkey seed (the issuer of the users the callout admits)."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT))


def keypair(seed: bytes) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(seed))
