"""Atomic batch publish (ADR-50, nats-server 2.12+): several messages stored together or not at all.

Every message carries the batch id and its 1-based position; the last one also carries
the commit header and is the only one that asks for a reply: the batch's acknowledgement,
whose `seq` is the last stored sequence and `count` the number of messages stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import nats.errors
from nats.aio.client import Client

from core.store import acks, wire
from core.store.acks import PubAck, parse_pub_ack
from core.store.nats_errors import from_exception

MAX_ATOMIC_BATCH = 1000  # the server's limit on messages in one atomic batch


class Message:
    """One message ready to publish: the encoded event with its subject and id."""

    __slots__ = ("event_id", "payload", "subject")

    def __init__(self, subject: str, payload: bytes, event_id: str) -> None:
        self.subject = subject
        self.payload = payload
        self.event_id = event_id


def frames(batch: Sequence[Message], *, reply: str, commit: bool = True, expected: int | None = None) -> bytes:
    """The wire frames of `batch` as one atomic batch with a fresh batch id (pure but for the id)."""
    return wire.batch_frames(
        [m.subject for m in batch],
        [m.payload for m in batch],
        [m.event_id for m in batch],
        batch_id=uuid.uuid4().hex,
        reply=reply,
        commit=commit,
        expected_last_subject_seq=expected,
    )


async def send_batch(nc: Client, batch: Sequence[Message], *, reply: str) -> None:
    """Publish `batch` as one atomic batch; its acknowledgement arrives on `reply`."""
    await wire.write(nc, frames(batch, reply=reply))


async def publish_atomic_batch(nc: Client, batch: Sequence[Message], *, expected: int | None, timeout: float) -> PubAck:
    """Publish `batch` atomically and wait for its acknowledgement (one request for the whole batch)."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        await wire.write(nc, frames(batch, reply=inbox, expected=expected))
        reply = await sub.next_msg(timeout=timeout)
    except (nats.errors.Error, TimeoutError) as exc:
        raise from_exception(exc, doing=f"atomic append of {len(batch)} events") from exc
    finally:
        if not nc.is_closed:
            await sub.unsubscribe()
    return parse_pub_ack(reply.data)


def single_frame(message: Message, *, reply: str) -> bytes:
    """One message published on its own, deduplicated by its event id (pure)."""
    return wire.hpub(message.subject, reply, wire.header_block([(acks.MSG_ID, message.event_id)]), message.payload)
