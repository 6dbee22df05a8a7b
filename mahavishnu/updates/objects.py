"""The artifacts bucket's bytes: a file streamed in as an object, an object removed (the control side's I/O).

Objects are written in the object store's own layout (core.updates.objects), so `nats
object get` and nats-py's ObjectStore read them, but not through nats-py's put(): that
waits for each chunk's acknowledgement before sending the next, and replaces an object
of the same name without a word. Here chunks go out with up to WINDOW acknowledgements
outstanding, each checked, the file is read and hashed off the event loop a block at a
time (memory stays at WINDOW chunks whatever the file's size), and the meta message is
published only if the name's meta subject is still where it was read: two uploads of one
name@version cannot both win.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import nats.errors
from nats.aio.client import Client
from nats.js import api
from nats.js.errors import APIError
from nats.nuid import NUID

from core.errors import MahavishnuError
from core.store.acks import ERR_WRONG_LAST_SEQUENCE, EXPECTED_LAST_SUBJECT_SEQ
from core.store.nats_errors import from_exception
from core.updates import objects
from core.updates.naming import ARTIFACTS_BUCKET, ARTIFACTS_STREAM
from edge.updates.objectinfo import Found, read_info

WINDOW = 64  # chunks sent and not yet acknowledged (8 MiB)
READ_BLOCK = 16  # chunks read from the file at a time, off the event loop
ACK_TIMEOUT_S = 30.0

_nuid = NUID()


class ObjectExists(MahavishnuError):
    """An object of that name is in the bucket (or was added meanwhile by someone else)."""


@dataclass(frozen=True)
class Stored:
    nuid: str
    length: int
    sha256: str  # lower-case hex
    chunks: int


async def info(nc: Client, name: str) -> Found | None:
    """The object's last meta message (a removed one's too), or None if it never existed.

    StoreError (StoreUnavailable: no bucket, no server) when it cannot be read.
    """
    try:
        return await read_info(nc, name)
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"read {name}'s info in the {ARTIFACTS_BUCKET} bucket") from None


async def put_file(nc: Client, name: str, path: Path, *, progress: Callable[[int, int], None] | None = None) -> Stored:
    """Stream the file at `path` into the bucket as object `name`; its length and SHA-256.

    ObjectExists when a live object has that name, before anything is sent, or when one
    was stored meanwhile (the chunks sent are purged then). OSError when the file cannot be
    read; StoreError (AppendFailed, StoreUnavailable) when the server does not store it.
    """
    existing = await info(nc, name)
    if existing is not None and not existing.info.deleted:
        raise ObjectExists(f"{name} is in the artifacts bucket already")
    expected_seq = existing.seq if existing is not None else 0
    total = (await asyncio.to_thread(path.stat)).st_size
    nuid = _nuid.next().decode()  # a fresh chunk subject per upload, as every NATS client makes it
    subject = objects.chunk_subject(ARTIFACTS_BUCKET, nuid)
    js = nc.jetstream(publish_async_max_pending=WINDOW, timeout=ACK_TIMEOUT_S)
    try:
        stored = await _send_chunks(nc, js, subject, path, total, progress)
        meta = objects.ObjectInfo(
            name=name,
            bucket=ARTIFACTS_BUCKET,
            nuid=nuid,
            size=stored.length,
            chunks=stored.chunks,
            digest=objects.digest(bytes.fromhex(stored.sha256)),
            mtime=datetime.now(UTC).isoformat(),
            options=objects.Options(),
        )
        header, value = objects.ROLLUP
        await js.publish(
            objects.meta_subject(ARTIFACTS_BUCKET, name),
            objects.encode_info(meta),
            headers={header: value, EXPECTED_LAST_SUBJECT_SEQ: str(expected_seq)},
        )
    except (Exception, asyncio.CancelledError) as exc:
        await _purge(js, subject)
        if isinstance(exc, APIError) and exc.err_code == ERR_WRONG_LAST_SEQUENCE:
            raise ObjectExists(f"{name} was stored by someone else meanwhile") from None
        if isinstance(exc, TimeoutError | nats.errors.Error):
            raise from_exception(exc, doing=f"store {name} in the {ARTIFACTS_BUCKET} bucket", appending=True) from None
        raise
    return Stored(nuid, stored.length, stored.sha256, stored.chunks)


async def remove(nc: Client, name: str) -> None:
    """Mark the object deleted (its meta message says so, as nats-py's delete does) and purge its chunks."""
    found = await info(nc, name)
    if found is None or found.info.deleted:
        return
    js = nc.jetstream()
    try:
        await _mark_deleted(js, name, found)
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"remove {name} from the {ARTIFACTS_BUCKET} bucket") from None
    await _purge(js, objects.chunk_subject(ARTIFACTS_BUCKET, found.info.nuid))


async def _mark_deleted(js: Any, name: str, found: Found) -> None:
    deleted = objects.ObjectInfo(name=name, bucket=ARTIFACTS_BUCKET, nuid=found.info.nuid, deleted=True)
    header, value = objects.ROLLUP
    meta = objects.meta_subject(ARTIFACTS_BUCKET, name)
    await js.publish(meta, objects.encode_info(deleted), headers={header: value})


async def _send_chunks(
    nc: Client, js: Any, subject: str, path: Path, total: int, progress: Callable[[int, int], None] | None
) -> Stored:
    hasher = hashlib.sha256()
    unacked: deque[asyncio.Future[api.PubAck]] = deque()
    sent = chunks = 0
    with path.open("rb") as handle:
        while True:
            block = await asyncio.to_thread(_read_block, handle, hasher)
            if not block:
                break
            for start in range(0, len(block), objects.CHUNK_SIZE):
                chunk = block[start : start + objects.CHUNK_SIZE]
                unacked.append(await js.publish_async(subject, chunk))
                sent += len(chunk)
                chunks += 1
                while unacked and unacked[0].done():
                    unacked.popleft().result()  # raises the server's refusal of that chunk
            if progress:
                progress(sent, total)
    try:
        for future in unacked:
            await asyncio.wait_for(future, ACK_TIMEOUT_S)
    finally:
        for future in unacked:
            future.cancel()
    return Stored("", sent, hasher.hexdigest(), chunks)


def _read_block(handle: IO[bytes], hasher: Any) -> bytes:
    block = handle.read(READ_BLOCK * objects.CHUNK_SIZE)
    hasher.update(block)  # hashlib lets go of the GIL for large buffers: this thread hashes in parallel
    return block


async def _purge(js: Any, subject: str) -> None:
    # Chunks that no meta message names are never read: a failed purge leaves only dead bytes.
    with contextlib.suppress(TimeoutError, nats.errors.Error):
        await js.purge_stream(ARTIFACTS_STREAM, subject=subject)
