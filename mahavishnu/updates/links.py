"""Signed links to an artifact's bytes, for devices that cannot read the bucket (MQTT-only ones) (pure, but the key).

An MQTT-only device has no JetStream, so it cannot pull an artifact's chunks as an agent
does. The MQTT bridge tells it where to fetch instead: a link to `up`'s HTTP door that
names the artifact, the device and an expiry, signed with a key only the control host holds
(HMAC-SHA256, like an S3 presigned URL). The door serves the bytes to a link whose
signature holds and whose time has not passed, and refuses any other; a link is good for
one device's one command, and only until the command's time to live ends.

The link is a bearer credential: it goes into the MQTT message the bridge publishes, never
into an event (the command's own arguments stay name, version, allow_downgrade).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlencode

KEY_BYTES = 32
PATH = "/artifacts/{name}/{version}"  # the HTTP door's route (mahavishnu.updates.door)


def signature(key: bytes, *, name: str, version: str, device: str, expires: int) -> str:
    """The link's signature over everything it grants (pure)."""
    message = "\x1f".join((name, version, device, str(expires))).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def link(base: str, key: bytes, *, name: str, version: str, device: str, expires: int) -> str:
    """The URL a device fetches `name`@`version` at, until `expires` (epoch seconds) (pure)."""
    query = urlencode(
        {
            "device": device,
            "expires": expires,
            "sig": signature(key, name=name, version=version, device=device, expires=expires),
        }
    )
    return f"{base.rstrip('/')}{PATH.format(name=name, version=version)}?{query}"


def refusal(key: bytes, *, name: str, version: str, device: str, expires: str, sig: str, now: float) -> str | None:
    """Why a request for a link must be refused, None when it holds (pure)."""
    if not (device and expires.isdigit() and sig):
        return "not a signed artifact link: it needs device, expires and sig"
    wanted = signature(key, name=name, version=version, device=device, expires=int(expires))
    if not hmac.compare_digest(wanted, sig):
        return "the link's signature does not hold: ask for the update again"
    if int(expires) < now:
        return "the link has expired: its command's time to live is over"
    return None


def load_key(path: Path) -> bytes:
    """The links' key, made on first use (owner-only, like every key of the home)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(KEY_BYTES)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(key)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(temporary, path)  # the first of two racing processes wins; the other reads its key
    except FileExistsError:
        pass
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_bytes()
