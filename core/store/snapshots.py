"""Stream snapshots through the JetStream API: every message with its sequence and time, out and back in.

A snapshot is what the server itself writes (`$JS.API.STREAM.SNAPSHOT.<stream>`): its
message blocks as one s2-compressed tar, sent in chunks, each acknowledged by the client
so the server never runs ahead of the disk it is written to. Restoring
(`$JS.API.STREAM.RESTORE.<stream>`) sends the chunks back and the server rebuilds the
stream exactly: same sequences, same timestamps, same deleted gaps, which is what lets the
read models rebuilt from it equal the old ones row for row (their positions and the audit
entries name sequences). nats-py has no client for either, hence this module.

The server writes the blocks decrypted: a snapshot holds the events in the clear, as the
stream's readers see them. Keep backups where the events may be.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from core.errors import StoreError
from core.store.nats_errors import from_exception

CHUNK_BYTES = 128 * 1024
ASK_S = 5.0  # how long one snapshot request waits for the stream's leader before it is asked again
# JSClusterNoPeersErr: a cluster started a moment ago places no replicated stream until every node it
# needs has reported in to the metadata leader; the same request succeeds a few seconds later.
NO_SUITABLE_PEERS = 10005


class _NoPeersYet(StoreError):
    """The cluster cannot place the stream yet (NO_SUITABLE_PEERS)."""


@dataclass(frozen=True)
class Snapshot:
    """What a restore needs beside the bytes: the stream's config and state as the server reported them."""

    stream: str
    config: dict[str, Any]
    state: dict[str, Any]
    size: int  # bytes written


async def _api(nc: Client, subject: str, body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    try:
        reply = await nc.request(f"{api.DEFAULT_PREFIX}.{subject}", json.dumps(body).encode(), timeout=timeout)
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"JetStream API {subject}") from exc
    answer: dict[str, Any] = json.loads(reply.data)
    if "error" in answer:
        error = answer["error"]
        kind = _NoPeersYet if error.get("err_code") == NO_SUITABLE_PEERS else StoreError
        raise kind(f"{subject}: {error.get('description', error)} (code {error.get('err_code', '?')})")
    return answer


async def snapshot_stream(
    nc: Client,
    stream: str,
    sink: BinaryIO,
    *,
    progress: Callable[[int], None] | None = None,
    timeout: float = 30.0,
) -> Snapshot:
    """Write a snapshot of `stream` to `sink` (consumers left out: they are rebuilt by their owners).

    Only a replicated stream's leader answers the request, and a stream electing its leader
    (a node of its group restarted a moment ago) drops it unanswered: it is asked again,
    every ASK_S, until `timeout`, each time with a new inbox so that two answers never mix.
    """
    deadline = time.monotonic() + timeout
    while True:
        chunks: asyncio.Queue[Msg] = asyncio.Queue()
        sub = await nc.subscribe(nc.new_inbox(), cb=chunks.put)
        try:
            answer = await _api(
                nc,
                f"STREAM.SNAPSHOT.{stream}",
                {"deliver_subject": sub.subject, "no_consumers": True, "chunk_size": CHUNK_BYTES},
                timeout=min(ASK_S, max(0.1, deadline - time.monotonic())),
            )
            break
        except StoreError as exc:
            await sub.unsubscribe()
            if not isinstance(exc.__cause__, TimeoutError) or time.monotonic() >= deadline:
                raise
    written = 0
    try:
        while True:
            try:
                msg = await asyncio.wait_for(chunks.get(), timeout)
            except TimeoutError:
                raise StoreError(f"snapshot of {stream}: no chunk for {timeout:.0f} s after {written} bytes") from None
            if not msg.data:  # the end; a status other than 204 says why it ended early
                status = (msg.headers or {}).get("Status", "204")
                if status != "204":
                    description = (msg.headers or {}).get("Description", "")
                    raise StoreError(f"snapshot of {stream} ended early: {status} {description}".strip())
                break
            await asyncio.to_thread(sink.write, msg.data)
            written += len(msg.data)
            if progress:
                progress(written)
            if msg.reply:  # the flow-control acknowledgement of this chunk (a lone last chunk may ask none)
                await nc.publish(msg.reply, b"")
    finally:
        await sub.unsubscribe()
    return Snapshot(stream, answer["config"], answer["state"], written)


# How soon a chunk nobody took yet is sent again (see send_chunk).
RESEND_S = 0.05
T = TypeVar("T")


async def send_chunk(nc: Client, target: str, chunk: bytes, *, timeout: float) -> Msg:
    """Send one chunk of a restore to the server's `target` subject; the server's acknowledgement.

    On a cluster the stream's leader subscribes to `target` and answers the API before that
    interest reaches the node we are connected to: a first chunk sent at once can find no
    one there (a fresh-clone run of test_backup restored a loopback cluster and failed on
    that). No responders means nobody received the chunk, so it is sent again, until
    `timeout`; a chunk that went unanswered is not (it may have been taken).
    """
    return await until_taken(lambda: nc.request(target, chunk, timeout=timeout), timeout=timeout)


async def until_taken(send: Callable[[], Awaitable[T]], *, timeout: float) -> T:
    """`send()` again every RESEND_S while it finds no responders, until `timeout`; its result."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await send()
        except nats.errors.NoRespondersError:
            if time.monotonic() + RESEND_S >= deadline:
                raise
        await asyncio.sleep(RESEND_S)  # the subscription's interest is on its way between the nodes


async def restore_stream(
    nc: Client,
    snapshot: Snapshot,
    chunks: AsyncIterator[bytes],
    *,
    progress: Callable[[int], None] | None = None,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Create `snapshot.stream` from its chunks; the stream must not exist. Returns the restored state.

    A cluster that cannot place the stream yet (its nodes still reporting in) is asked
    again until `timeout`.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = await _api(
                nc,
                f"STREAM.RESTORE.{snapshot.stream}",
                {"config": snapshot.config, "state": snapshot.state},
                timeout=timeout,
            )
            break
        except _NoPeersYet:
            if time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.5)  # retry interval while the cluster's nodes report in, bounded by the deadline
    target = answer["deliver_subject"]
    sent = 0
    try:
        async for chunk in chunks:
            await send_chunk(nc, target, chunk, timeout=timeout)
            sent += len(chunk)
            if progress:
                progress(sent)
        done = await send_chunk(nc, target, b"", timeout=timeout)  # the end: the server now builds the stream
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"restore of {snapshot.stream}, after {sent} bytes", appending=True) from exc
    result: dict[str, Any] = json.loads(done.data)
    if "error" in result:
        error = result["error"]
        raise StoreError(f"restore of {snapshot.stream}: {error.get('description', error)}")
    state: dict[str, Any] = result.get("state", {})
    return state
