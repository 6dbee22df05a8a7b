"""Bulk replay: a stream's messages, raw and in order, as fast as the server sends them.

`EventStore.read` fetches in pulls and decodes each event, which suits catching up a few
hundred events. A rebuild replays millions: there pull requests for large batches go
to an ack-free consumer a few batches ahead of the caller, their messages land on a plain
inbox subscription, and they are handed on undecoded, in lists, so that decoding can
happen wherever the caller does its work (a rebuild does it in another process).

Why not nats-py's own consumers: its `fetch()` waits for each message with a timeout of
its own, which caps a replay at about a third of the server's pace (36k against 97k
messages/s here). Its ordered push consumer runs at the server's pace, but behind a
slower caller its deliveries queue up in the client, the server's stall is released by
the client on the next heartbeat, and past the pending limits messages are dropped after
the gap check: a replay of 1M events behind the bulk loader stalled at 529k while the
server reported all of them delivered. Pull requests ask only for what the caller is
ready to take. A pull asks only for what the caller is ready to take.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import NamedTuple

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from core.errors import StoreError
from core.store.nats_errors import from_exception


class RawMessage(NamedTuple):
    stream: str
    seq: int
    subject: str
    data: bytes


def ack_position(reply: str) -> tuple[int, int]:
    """(stream sequence, messages still pending) from a JetStream delivery's reply subject (pure).

    Two layouts exist: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`
    and, since 2.9, `$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>.<token>`.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[10])
    raise ValueError(f"not a JetStream delivery reply subject: {reply!r}")


def reader_config(subject_filter: str, from_seq: int, *, inactive_s: float = 60.0) -> api.ConsumerConfig:
    """A short-lived reader of `subject_filter` from `from_seq` (pure): no acks, in memory, one replica.

    Every read of history uses one (replays, reads, counts): nothing is acknowledged, so
    nothing is redelivered, and the server drops it `inactive_s` after its last use.
    """
    return api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=max(1, from_seq),
        ack_policy=api.AckPolicy.NONE,
        filter_subject=subject_filter,
        inactive_threshold=inactive_s,
        mem_storage=True,
        num_replicas=1,
    )


NO_RESPONDERS_TRIES = 50  # 503s a replay asks again after, NO_RESPONDERS_PAUSE_S apart, before it gives up
NO_RESPONDERS_PAUSE_S = 0.1


async def replay(
    nc: Client,
    js: JetStreamContext,
    stream: str,
    subject_filter: str,
    from_seq: int = 1,
    *,
    batch: int = 1000,
    ahead: int = 4,
    timeout: float = 10.0,
) -> AsyncGenerator[list[RawMessage], None]:
    """Yield lists of up to `batch` messages on `subject_filter` from `from_seq`, in order.

    Stops after the messages that existed when the replay began. Pull requests of `batch`
    messages each keep `ahead` lists on their way: one more is asked for each time the
    caller takes one, so memory stays bounded however long the stream is. Raises
    StoreError when no message came for `timeout` seconds.
    """
    config = reader_config(subject_filter, from_seq)
    try:
        info = await js.add_consumer(stream, config=config)
    except (TimeoutError, nats.errors.Error) as exc:
        raise from_exception(exc, doing=f"replay {subject_filter}") from exc
    total = info.num_pending or 0
    next_subject = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{info.name}"  # nats-py keeps the API prefix private
    expires_ns = int(timeout / 2 * 1e9)  # a request that outlives this ends with a 408 and is asked again
    lists: asyncio.Queue[list[RawMessage] | Exception] = asyncio.Queue()
    filling: list[RawMessage] = []
    requested = received = 0
    unanswered = 0  # pull requests that found no consumer to serve them (503)

    async def ask() -> None:
        nonlocal requested
        wanted = min(batch, total - requested)
        if wanted > 0:
            requested += wanted
            await nc.publish(next_subject, json.dumps({"batch": wanted, "expires": expires_ns}).encode(), reply=inbox)

    async def collect(msg: Msg) -> None:
        nonlocal filling, received, requested, unanswered
        status = msg.headers.get(api.Header.STATUS) if msg.headers else None
        if status == "408":  # the request expired before all of its messages came: ask again for the rest
            requested -= int(msg.headers.get("Nats-Pending-Messages", "0"))  # type: ignore[union-attr]
            await ask()
            return
        if status == "503" and unanswered < NO_RESPONDERS_TRIES:
            # No responders: on a cluster, a consumer just made may not serve its pull requests
            # for a moment (its leader is still being chosen). Nothing of that request comes, so
            # its share is asked for again; counting a whole batch back can only ask for too
            # much, which the consumer never sends and the request's expiry settles.
            unanswered += 1
            requested -= min(batch, requested - received)
            await asyncio.sleep(NO_RESPONDERS_PAUSE_S)
            await ask()
            return
        if status is not None:
            if status != "100":  # heartbeats aside, a status ends the replay: the consumer is gone
                reason = msg.headers.get(api.Header.DESCRIPTION, "")  # type: ignore[union-attr]
                lists.put_nowait(StoreError(f"replay {subject_filter}: the server answered {status} {reason}"))
            return
        try:
            seq, _ = ack_position(msg.reply)
        except ValueError as exc:  # not a JetStream delivery: a bug, or a foreign server
            lists.put_nowait(exc)
            return
        filling.append(RawMessage(stream, seq, msg.subject, msg.data))
        received += 1
        if len(filling) == batch or received == total:
            lists.put_nowait(filling)
            filling = []

    inbox = nc.new_inbox()
    # The callback only appends, so it never holds up the connection, and the pull requests
    # bound what can arrive: no message can be dropped as a slow consumer's.
    sub = await nc.subscribe(inbox, cb=collect, pending_msgs_limit=-1, pending_bytes_limit=-1)
    try:
        for _ in range(ahead):
            await ask()
        taken = 0
        while taken < total:
            try:
                item = await asyncio.wait_for(lists.get(), timeout)
            except TimeoutError:
                stalled = f"replay {subject_filter}: no message for {timeout:.0f} s; is the server reachable?"
                raise StoreError(stalled) from None
            if isinstance(item, Exception):
                raise item
            taken += len(item)
            await ask()
            yield item
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):  # gone with the connection: it expires on its own
            await sub.unsubscribe()
            await js.delete_consumer(stream, info.name)
