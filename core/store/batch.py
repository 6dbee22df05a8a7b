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

from core.store import wire
from core.store.acks import PubAck, parse_pub_ack
from core.store.nats_errors import from_exception
from core.store.wire import Message

MAX_ATOMIC_BATCH = 1000  # the server's limit on messages in one atomic batch


async def publish_atomic_batch(
    nc: Client,
    batch: Sequence[Message],
    *,
    expected: int | None,
    timeout: float,
    expected_last_seq: int | None = None,
) -> PubAck:
    """Publish `batch` atomically and wait for its acknowledgement (one request for the whole batch).

    `expected` is the expected last sequence of the first message's subject, `expected_last_seq`
    that of the whole stream; the batch is stored only if both hold.
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    try:
        frames = wire.batch_frames(
            batch,
            batch_id=uuid.uuid4().hex,
            reply=inbox,
            expected_last_subject_seq=expected,
            expected_last_seq=expected_last_seq,
        )
        await wire.write(nc, frames)
        reply = await sub.next_msg(timeout=timeout)
    except (nats.errors.Error, TimeoutError) as exc:
        raise from_exception(exc, doing=f"atomic append of {len(batch)} events", appending=True) from exc
    finally:
        if not nc.is_closed:
            await sub.unsubscribe()
    return parse_pub_ack(reply.data)
