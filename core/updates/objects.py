"""The object store's layout on its stream, as every NATS client writes and reads it (pure).

An object in bucket B is chunks on `$O.B.C.<nuid>` (a fresh nuid per upload) and one
meta message on `$O.B.M.<name, base64url>`: its info as JSON (size, chunks, SHA-256
digest), rolled up so only the last one stays. The control side writes objects in this
layout itself (pipelined, mahavishnu.updates.objects) and the device reads the chunks
through a consumer of its own (edge.updates.download); keeping to the layout keeps
`nats object get` and nats-py's ObjectStore reading the same objects.
"""

from __future__ import annotations

import base64
import binascii

import msgspec

CHUNK_SIZE = 128 * 1024  # the chunk size of nats-py, the Go client and the `nats` CLI
DIGEST_PREFIX = "SHA-256="
ROLLUP = ("Nats-Rollup", "sub")  # the meta message replaces the subject's earlier ones


class Options(msgspec.Struct):
    max_chunk_size: int = CHUNK_SIZE


class ObjectInfo(msgspec.Struct, omit_defaults=True):
    """The meta message's JSON; unknown fields (headers, links, ...) are ignored on read."""

    name: str
    bucket: str
    nuid: str
    size: int = 0
    chunks: int = 0
    digest: str = ""
    mtime: str = ""
    deleted: bool = False
    description: str = ""
    options: Options | None = None

    @property
    def chunk_size(self) -> int:
        return self.options.max_chunk_size if self.options else CHUNK_SIZE

    @property
    def sha256(self) -> str:
        """The digest as lower-case hex (the form TUF and our events use); "" when it is not SHA-256."""
        return sha256_hex(self.digest)


_decoder = msgspec.json.Decoder(ObjectInfo)


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def chunk_subject(bucket: str, nuid: str) -> str:
    return f"$O.{bucket}.C.{nuid}"


def digest(sha256: bytes) -> str:
    """The meta's digest field for a SHA-256 value, as the NATS clients write it."""
    return DIGEST_PREFIX + base64.urlsafe_b64encode(sha256).decode()


def sha256_hex(value: str) -> str:
    if not value.upper().startswith(DIGEST_PREFIX.upper()):
        return ""
    try:
        return base64.urlsafe_b64decode(value[len(DIGEST_PREFIX) :]).hex()
    except (binascii.Error, ValueError):
        return ""


def encode_info(info: ObjectInfo) -> bytes:
    return msgspec.json.encode(info)


def decode_info(data: bytes) -> ObjectInfo:
    """The meta message's info; ValueError when it is not an object's info."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not an object's info: {exc}") from None
