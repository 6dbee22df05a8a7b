"""Chained appends: several events stored one right after the other, pipelined in one write.

What a hash chain needs (core.audit): each entry must land directly after the one it
names, even while other writers append to the same stream. Each message therefore
carries two expectations the server checks as it stores it: the stream's last sequence
(`Nats-Expected-Last-Sequence`) and, from the second message on, the id of the last
message (`Nats-Expected-Last-Msg-Id`, the previous event's id, which the server notes
as it stores each message). The sequence alone is
not enough once several are in flight: if another writer's entry took our first
message's place, our second could still find the sequence it expects and be stored
after a stranger. With the id as well, the first refusal refuses everything after it,
so what is stored is always a prefix of the chain, never a gap.

Why not an atomic batch (core.store.batch): on a file-stored stream with one replica,
nats-server stages every atomic batch in a file store of its own, created and removed
per batch: about 10 ms a batch however small, where one pipelined message costs tens
of microseconds (measured with nats-server 2.15; see docs/adr/0011).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.errors import StoreError
from core.store import acks, wire
from core.store.acks import PubAck, parse_pub_ack
from core.store.nats_errors import from_api_error, from_exception
from core.store.wire import Message


@dataclass(frozen=True)
class ChainAcks:
    """What the server said of each message of a chained append, in order."""

    acks: list[PubAck]

    def stored(self) -> list[PubAck]:
        """The acknowledgements of the stored prefix: up to the first refusal or duplicate."""
        prefix = []
        for ack in self.acks:
            if ack.error is not None or ack.duplicate:
                break
            prefix.append(ack)
        return prefix


def chain_frames(messages: Sequence[Message], *, after_seq: int, inbox: str) -> bytes:
    """The frames of a chained append (pure): message i expects sequence after_seq + i and the previous one's id.

    The first expects the sequence alone: that is enough for the entry the caller chains
    to (the stream denies delete and purge, so a sequence names one entry for good), and
    the server may not know that entry's id (it forgets the last id across a restart once
    it is older than the duplicate window).
    """
    out = bytearray()
    previous: str | None = None
    for position, message in enumerate(messages):
        headers = [(acks.MSG_ID, message.event_id), (acks.EXPECTED_LAST_SEQ, str(after_seq + position))]
        if previous:
            headers.append((acks.EXPECTED_LAST_MSG_ID, previous))
        out += wire.hpub(message.subject, f"{inbox}.{position}", wire.header_block(headers), message.payload)
        previous = message.event_id
    return bytes(out)


async def publish_chained(nc: Client, messages: Sequence[Message], *, after_seq: int, timeout: float) -> ChainAcks:
    """Publish `messages` chained after `after_seq` and wait for every acknowledgement.

    AppendFailed (or StoreUnavailable) when some are not answered within `timeout`: then
    any of them may or may not be stored.
    """
    inbox = nc.new_inbox()
    answers: list[PubAck | None] = [None] * len(messages)
    missing = len(messages)
    all_answered = asyncio.Event()

    async def on_ack(msg: Msg) -> None:
        nonlocal missing
        position = int(msg.subject.rsplit(".", 1)[1])
        if answers[position] is None:
            answers[position] = parse_pub_ack(msg.data)
            missing -= 1
            if missing == 0:
                all_answered.set()

    sub = await nc.subscribe(f"{inbox}.*", cb=on_ack)
    try:
        await wire.write(nc, chain_frames(messages, after_seq=after_seq, inbox=inbox))
        await asyncio.wait_for(all_answered.wait(), timeout)
    except (nats.errors.Error, TimeoutError) as exc:
        raise from_exception(exc, doing=f"chained append of {len(messages)} events", appending=True) from exc
    finally:
        if not nc.is_closed:
            await sub.unsubscribe()
    return ChainAcks([answer for answer in answers if answer is not None])


def refusal(chain: ChainAcks, messages: Sequence[Message], after_seq: int) -> StoreError | None:
    """Why the chain stopped short (pure): the first refusal as a StoreError, None when all were stored.

    A wrong last sequence or last id is a ConcurrencyConflict: another writer got in. A
    duplicate means the event was stored before, so the chain cannot go on from it
    either: also a conflict, to be resolved by reading the stream's end.
    """
    for position, ack in enumerate(chain.acks):
        subject = messages[position].subject
        expected = after_seq + position
        if ack.error is not None:
            return from_api_error(ack.error, subject=subject, expected=expected)
        if ack.duplicate:
            return from_api_error(
                acks.ApiError(err_code=acks.ERR_WRONG_LAST_SEQUENCE, description="stored before (duplicate)"),
                subject=subject,
                expected=expected,
            )
    return None
