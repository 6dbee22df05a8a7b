"""Download an artifact's bytes from the artifacts bucket: fast, resumable, in bounded memory.

nats-py's stock ObjectStore.get() reads through an ordered push consumer and gathers the
object in memory (about 5.5 MB/s for 50 MiB, bench/ota.py measures it again). Here the
device reads the object's chunks through its own pull consumer (download_consumer(device),
the only one its permissions let it create), filtered on the object's chunk subject,
without acks: requests of BATCH chunks are kept IN_FLIGHT so the pipe never drains, each
chunk is hashed and written to `dest.part` as it arrives, and at most IN_FLIGHT * BATCH
chunks (6 MiB) are ever buffered, whatever the artifact's size.

A cut link shows as a gap in the consumer's sequence, a reconnect, or no chunk for
STALL_S: the consumer is created again from the stream sequence after the last chunk
written. A checkpoint beside the partial file (edge.updates.partial), saved every
CHECKPOINT_BYTES once an fsync off the read path has made them durable, carries that
across an agent restart. The file is moved to `dest` only when its length and SHA-256
are the signed ones; otherwise the update is refused and the partial file deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from core.updates import objects
from core.updates.naming import ARTIFACTS_BUCKET, ARTIFACTS_STREAM, download_consumer
from edge.errors import EdgeError
from edge.updates.errors import Refusal, UpdateRefused
from edge.updates.objectinfo import Found, read_info
from edge.updates.partial import Checkpoint, Partial, Resumed

BATCH = 16  # chunks per pull request: 2 MiB of 128 KiB chunks
IN_FLIGHT = 3  # pull requests kept outstanding, so a new one is waiting before the last one drains
HEADROOM = 4096  # bytes per chunk for the subject and headers, in a request's max_bytes
CHECKPOINT_BYTES = 8 * 1024 * 1024  # fsync and save the checkpoint this often
REQUEST_EXPIRES_S = 30.0
IDLE_SLICE_S = 0.5  # how often a waiting download looks at the connection
STALL_S = 10.0  # no chunk for this long with requests out: the consumer is made again
GIVE_UP_S = 120.0  # no progress at all for this long: DownloadFailed (the partial file stays)
API_TIMEOUT_S = 5.0

_STATUS = "Status"


class DownloadFailed(EdgeError):
    """The bytes could not be fetched (the bucket or the link); the partial file stays for the next attempt."""


class _LinkLost(DownloadFailed):
    """Chunks were lost on the way, or none came: make the consumer again from the last chunk written."""


@dataclass(frozen=True)
class Delivery:
    stream_seq: int
    consumer_seq: int
    pending: int


def delivery_of(reply: str) -> Delivery:
    """A JetStream delivery's positions, from its `$JS.ACK...` reply subject (pure; both formats).

    v1: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>
    v2: $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<time>.<pending>[.<token>]
    """
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        raise ValueError(f"not a JetStream delivery: {reply!r}")
    return Delivery(int(tokens[base + 3]), int(tokens[base + 4]), int(tokens[base + 6]))


async def download(
    nc: Client,
    *,
    device_id: str,
    target: str,
    dest: Path,
    length: int,
    sha256: str,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Fetch the object `target` into `dest`, checked against the signed `length` and `sha256`; `dest`.

    Resumes a partial download of the same object left beside `dest`. UpdateRefused
    (Refusal.LENGTH or Refusal.HASH) when the bytes are not the signed ones: nothing is
    left at `dest` or beside it. DownloadFailed when the object is not in the bucket or
    no chunk came for GIVE_UP_S (the partial file stays, to resume). One download per
    device at a time: they would share the device's one consumer.
    """
    partial = Partial(dest)
    found = await _info(nc, target)
    info = found.info
    if info.size != length:
        partial.discard()
        raise UpdateRefused(
            Refusal.LENGTH, f"{target} is {info.size} bytes in the bucket, the signed length is {length}"
        )
    fresh = Checkpoint(target=target, nuid=info.nuid, length=length, sha256=sha256.lower())
    resumed = await asyncio.to_thread(partial.resume, fresh)
    fetch = _Fetch(nc, download_consumer(device_id), info, partial, resumed, progress)
    try:
        try:
            await fetch.run()
        finally:
            await fetch.close()  # after its last checkpoint landed: nothing writes beside `dest` any more
    except UpdateRefused:
        partial.discard()
        raise
    written, digest = fetch.checkpoint.written, fetch.hasher.hexdigest()
    if written != length:
        partial.discard()
        raise UpdateRefused(Refusal.LENGTH, f"{target}: {written} bytes arrived, the signed length is {length}")
    if digest != sha256.lower():
        partial.discard()
        raise UpdateRefused(Refusal.HASH, f"{target}: its SHA-256 is {digest}, the signed one is {sha256.lower()}")
    os.replace(partial.file, dest)
    partial.discard()
    return dest


async def _info(nc: Client, target: str) -> Found:
    deadline = time.monotonic() + GIVE_UP_S
    while True:
        try:
            found = await read_info(nc, target, timeout=API_TIMEOUT_S)
            break
        except nats.errors.NoRespondersError:
            raise DownloadFailed(f"{target}: the mesh has no artifacts bucket (its `up` makes it)") from None
        except (TimeoutError, nats.errors.Error) as exc:
            if nc.is_closed or time.monotonic() > deadline:
                raise DownloadFailed(f"{target}: the artifacts bucket does not answer ({exc!r})") from None
            await _connected(nc, deadline)
    if found is None or found.info.deleted or not found.info.nuid:
        raise DownloadFailed(f"{target} is not in the artifacts bucket (removed?): nothing to download")
    return found


async def _connected(nc: Client, deadline: float) -> None:
    """Wait until the client is connected again (it reconnects on its own), or the deadline."""
    # nats-py signals a reconnect only through the callback given at connect, which is the
    # agent's: polling its state, bounded by the deadline, is all a caller of ours can do.
    while not nc.is_connected and not nc.is_closed and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    if not nc.is_connected:
        raise DownloadFailed("the connection to the mesh is lost; the download resumes on the next attempt")


class _Fetch:
    """One object's chunks into the partial file, over as many consumers as cut links need."""

    def __init__(
        self,
        nc: Client,
        consumer: str,
        info: objects.ObjectInfo,
        partial: Partial,
        resumed: Resumed,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.nc = nc
        self.consumer = consumer
        self.info = info
        self.partial = partial
        self.checkpoint = resumed.checkpoint
        self.hasher = resumed.hasher
        self.progress = progress
        self.saved = self.checkpoint.written
        self.saving: asyncio.Task[None] | None = None
        self.out: IO[bytes] = partial.file.open("r+b")
        self.out.seek(self.checkpoint.written)
        self.sub: Subscription | None = None
        self.progressed = time.monotonic()

    async def run(self) -> None:
        if self.progress:
            self.progress(self.checkpoint.written, self.info.size)
        while self.checkpoint.chunks < self.info.chunks:
            try:
                await self._consume()
                continue
            except _LinkLost:
                why = "chunks stopped coming"
            except nats.errors.NoRespondersError:
                raise DownloadFailed(f"{self.info.name}: the artifacts bucket went away mid-download") from None
            except (TimeoutError, nats.errors.Error) as exc:
                why = repr(exc)
            await self._drop_subscription()
            if self.nc.is_closed or time.monotonic() > self.progressed + GIVE_UP_S:
                raise DownloadFailed(f"{self.info.name}: the download stopped ({why}); it resumes on the next attempt")
            await _connected(self.nc, self.progressed + GIVE_UP_S)
        self.out.flush()

    async def close(self) -> None:
        if self.saving is not None:  # let the last checkpoint land before the files are moved or removed
            with contextlib.suppress(OSError):
                await self.saving
        self.out.close()
        await self._drop_subscription()
        if self.nc.is_connected:
            # If this fails, the server removes the idle consumer after its inactive threshold anyway.
            with contextlib.suppress(TimeoutError, nats.errors.Error):
                await self._delete_consumer()

    async def _consume(self) -> None:
        remaining = self.info.chunks - self.checkpoint.chunks
        pending = await self._create_consumer()
        if pending < remaining:
            raise UpdateRefused(
                Refusal.LENGTH,
                f"{self.info.name} is truncated: {self.checkpoint.chunks + pending} of its {self.info.chunks} "
                "chunks are in the bucket",
            )
        inbox = self.nc.new_inbox()
        self.sub = await self.nc.subscribe(inbox)
        max_bytes = BATCH * (self.info.chunk_size + HEADROOM)
        to_request, outstanding, expected = remaining, 0, 1
        reconnects = self.nc.stats["reconnects"]
        idle = 0.0
        while self.checkpoint.chunks < self.info.chunks:
            while to_request and outstanding + min(BATCH, to_request) <= IN_FLIGHT * BATCH:
                batch = min(BATCH, to_request)
                await self._pull(inbox, batch, max_bytes)
                to_request -= batch
                outstanding += batch
            try:
                msg = await self.sub.next_msg(timeout=IDLE_SLICE_S)
            except nats.errors.TimeoutError:
                idle += IDLE_SLICE_S
                if self.nc.stats["reconnects"] != reconnects or idle >= STALL_S:
                    raise _LinkLost() from None
                continue
            idle = 0.0
            status = (msg.headers or {}).get(_STATUS)
            if status is not None:
                unfilled = self._ended(msg.headers or {}, status)
                outstanding -= unfilled
                to_request += unfilled
                continue
            delivery = delivery_of(msg.reply)
            if delivery.consumer_seq != expected:
                raise _LinkLost()  # some deliveries never arrived
            expected += 1
            outstanding -= 1
            self._write(msg.data, delivery.stream_seq)

    def _ended(self, headers: dict[str, str], status: str) -> int:
        """A pull request ended before it was filled: how many chunks it left to ask for again."""
        description = headers.get("Description", "")
        if status == "100":  # an idle heartbeat
            return 0
        if status == "409" and "MaxBytes" in description:
            raise DownloadFailed(f"{self.info.name}: a chunk is larger than its object's chunk size ({description})")
        if status in ("408", "409") and "Nats-Pending-Messages" in headers:
            return int(headers["Nats-Pending-Messages"])
        raise _LinkLost()  # the consumer was deleted, its leader changed, ...

    def _write(self, data: bytes, stream_seq: int) -> None:
        written = self.checkpoint.written + len(data)
        if written > self.info.size:
            raise UpdateRefused(
                Refusal.LENGTH, f"{self.info.name}: more bytes arrived than its signed length {self.info.size}"
            )
        self.out.write(data)
        self.hasher.update(data)
        self.checkpoint = msgspec.structs.replace(
            self.checkpoint, written=written, chunks=self.checkpoint.chunks + 1, next_seq=stream_seq + 1
        )
        self.progressed = time.monotonic()
        if written - self.saved >= CHECKPOINT_BYTES and (self.saving is None or self.saving.done()):
            if self.saving is not None:
                self.saving.result()  # a checkpoint that could not be written fails the download here
            self.out.flush()
            self.saved = written
            self.saving = asyncio.create_task(self._save(self.checkpoint))
        if self.progress:
            self.progress(written, self.info.size)

    async def _save(self, checkpoint: Checkpoint) -> None:
        """Make the bytes up to `checkpoint` durable, then say so; off the loop, while the chunks keep coming."""
        await asyncio.to_thread(os.fsync, self.out.fileno())
        self.partial.save(checkpoint)

    async def _create_consumer(self) -> int:
        """(Re)create the device's consumer on the object's remaining chunks; how many are in the bucket."""
        await self._delete_consumer()  # a previous attempt's, with another start: a create would not replace it
        filter_subject = objects.chunk_subject(ARTIFACTS_BUCKET, self.info.nuid)
        config: dict[str, Any] = {
            "name": self.consumer,
            "filter_subject": filter_subject,
            "ack_policy": "none",
            "mem_storage": True,  # nothing to keep: the checkpoint is the device's
            "inactive_threshold": int(STALL_S * 3 * 1e9),  # left behind by a device that died: gone soon
        }
        if self.checkpoint.next_seq:
            config |= {"deliver_policy": "by_start_sequence", "opt_start_seq": self.checkpoint.next_seq}
        else:
            config["deliver_policy"] = "all"
        request = {"stream_name": ARTIFACTS_STREAM, "config": config, "action": "create"}
        subject = f"$JS.API.CONSUMER.CREATE.{ARTIFACTS_STREAM}.{self.consumer}.{filter_subject}"
        answer = await self._api(subject, request)
        return int(answer.get("num_pending", 0))

    async def _delete_consumer(self) -> None:
        await self._api(f"$JS.API.CONSUMER.DELETE.{ARTIFACTS_STREAM}.{self.consumer}", None, missing_ok=True)

    async def _pull(self, inbox: str, batch: int, max_bytes: int) -> None:
        request = {"batch": batch, "max_bytes": max_bytes, "expires": int(REQUEST_EXPIRES_S * 1e9)}
        await self.nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{ARTIFACTS_STREAM}.{self.consumer}", json.dumps(request).encode(), reply=inbox
        )

    async def _api(self, subject: str, request: dict[str, Any] | None, *, missing_ok: bool = False) -> dict[str, Any]:
        payload = json.dumps(request).encode() if request is not None else b""
        msg = await self.nc.request(subject, payload, timeout=API_TIMEOUT_S)
        answer: dict[str, Any] = json.loads(msg.data)
        error = answer.get("error")
        if error and not (missing_ok and error.get("code") == 404):
            raise DownloadFailed(
                f"{self.info.name}: the server refused {subject.split('.')[3].lower()} of consumer {self.consumer}: "
                f"{error.get('description', error)}"
            )
        return answer

    async def _drop_subscription(self) -> None:
        sub, self.sub = self.sub, None
        if sub is not None and self.nc.is_connected:
            with contextlib.suppress(nats.errors.Error):  # the connection went meanwhile, and the subscription with it
                await sub.unsubscribe()
