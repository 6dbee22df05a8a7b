"""Sealing sensitive event fields with per-subject data keys, for erasure by crypto-shredding (pure).

Each data subject (today: a device, `device_subject("dev-a")`) has its own 256-bit data
key. A sensitive field is stored in events as `Sealed` (AES-256-GCM): the key's id, a
random 96-bit nonce and the ciphertext. The associated data binds the ciphertext to its
subject, its field and its key id, so a sealed owner cannot be replayed as another
device's owner or as a location: it would fail authentication, not decrypt to a lie.

Deleting a subject's key erases every field it sealed, in every stream, backup and
rebuilt read model at once, while the events themselves stay (the streams are append-only
history). Where the keys live is the caller's business: a `KeyStore` answers "the key of
this subject, or None". No function here logs, and no error names a key's bytes.

This module needs `cryptography`, so only the control side imports it; the edge install
decodes events (core.events.sealed) without it.
"""

from __future__ import annotations

import re
import secrets
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import MahavishnuError
from core.events.sealed import Sealed

KEY_BYTES = 32
NONCE_BYTES = 12  # the GCM standard; random per field, and a key seals a handful of fields, never 2^32
_KEY_TEXT = re.compile(r"([0-9a-f]{16}) ([0-9a-f]{64})")


class SealingError(MahavishnuError):
    """A sealed field could not be opened, or a key could not be read; the message never holds key bytes."""


class DataKey:
    """One subject's data key: `key_id` is public (it travels in events), the secret never leaves this object
    except through `seal`, `unseal` and `to_text` (for the key store's file)."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, key_id: str, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise SealingError(f"data key {key_id} is {len(secret)} bytes, not {KEY_BYTES}")
        self.key_id = key_id
        self._secret = secret

    def __repr__(self) -> str:  # so that no log line or traceback ever shows the secret
        return f"DataKey(key_id={self.key_id!r})"

    def to_text(self) -> str:
        """The key as one line, "<key id> <secret as hex>", for a 0600 file."""
        return f"{self.key_id} {self._secret.hex()}\n"

    @classmethod
    def from_text(cls, text: str, *, where: str) -> DataKey:
        """Parse `to_text`'s line; SealingError naming `where` (never the content) when it is malformed."""
        found = _KEY_TEXT.fullmatch(text.strip())
        if found is None:
            raise SealingError(f"the data key in {where} is malformed: restore it from a backup made with keys")
        return cls(found[1], bytes.fromhex(found[2]))


def new_data_key() -> DataKey:
    """A fresh random key with a fresh random id (a new key after re-enrolment never opens the old fields)."""
    return DataKey(secrets.token_hex(8), AESGCM.generate_key(bit_length=KEY_BYTES * 8))


def device_subject(device_id: str) -> str:
    """The data subject of a device's personal fields: the name its data key is kept under."""
    return f"device:{device_id}"


def associated_data(subject: str, field: str, key_id: str) -> bytes:
    """What a sealed field is bound to (authenticated, not encrypted): its subject, field and key."""
    return f"mahavishnu.sealed.v1\0{subject}\0{field}\0{key_id}".encode()


def seal(key: DataKey, plaintext: str, *, subject: str, field: str) -> Sealed:
    """Encrypt one field's value for `subject` with its data key."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(key._secret).encrypt(nonce, plaintext.encode(), associated_data(subject, field, key.key_id))
    return Sealed(key_id=key.key_id, nonce=nonce, ciphertext=ciphertext)


def unseal(key: DataKey, sealed: Sealed, *, subject: str, field: str) -> str:
    """Decrypt one field; SealingError when `key` is not the key that sealed it or the value was changed."""
    if sealed.key_id != key.key_id:
        raise SealingError(f"{field} of {subject} was sealed with key {sealed.key_id}, not {key.key_id}")
    try:
        plain = AESGCM(key._secret).decrypt(
            sealed.nonce, sealed.ciphertext, associated_data(subject, field, sealed.key_id)
        )
    except (InvalidTag, ValueError):
        raise SealingError(f"{field} of {subject} does not authenticate: it was changed or moved") from None
    return plain.decode()


class KeyStore(Protocol):
    """Where data keys are kept: the key of a subject, or None when it has none (never had, or erased)."""

    def get(self, subject: str) -> DataKey | None: ...


def reveal(key: DataKey | None, sealed: Sealed | None, *, subject: str, field: str) -> str | None:
    """The plaintext of a sealed field, or None when it cannot be had: no value, no key (erased, or no
    key store), another key (replaced), or a value that does not authenticate. Read models store
    that None, so a field whose key is gone leaves nothing behind in them."""
    if sealed is None or key is None or key.key_id != sealed.key_id:
        return None
    try:
        return unseal(key, sealed, subject=subject, field=field)
    except SealingError:
        return None
