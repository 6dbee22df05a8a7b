"""An encrypted event field, as it travels in events (msgspec only: the edge install decodes it too).

A `Sealed` value is what a sensitive field holds instead of its plaintext: the id of the
data key that sealed it, the AEAD nonce and the ciphertext (with its tag). Sealing and
unsealing live in `core.sealing`, which needs `cryptography`; this module does not, so
every event still decodes on a device, where `cryptography` is not installed.
"""

from __future__ import annotations

import msgspec


class Sealed(msgspec.Struct, frozen=True, kw_only=True):
    """A field encrypted with a per-subject data key (JSON: bytes as base64).

    Without the key named by `key_id` it is noise: deleting that key erases the field in
    every copy of the event (crypto-shredding).
    """

    key_id: str
    nonce: bytes
    ciphertext: bytes
