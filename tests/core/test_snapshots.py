"""Restoring a stream: a chunk that found no one yet (a cluster's interest still on its way) is sent again."""

from __future__ import annotations

import uuid

import nats.errors
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.store.snapshots import until_taken


async def test_a_chunk_nobody_took_yet_is_sent_again_until_someone_answers(nc: Client) -> None:
    target = f"tests.restore.{uuid.uuid4().hex}"
    attempts = 0

    async def acknowledge(msg: Msg) -> None:
        await msg.respond(b"ack")

    async def send() -> Msg:
        nonlocal attempts
        attempts += 1
        if attempts == 2:  # the leader's interest arrives after the first chunk was sent
            await nc.subscribe(target, cb=acknowledge)
            await nc.flush()
        return await nc.request(target, b"chunk", timeout=5)

    reply = await until_taken(send, timeout=10)
    assert reply.data == b"ack" and attempts == 2


async def test_a_chunk_nobody_ever_takes_fails_at_the_deadline(nc: Client) -> None:
    target = f"tests.restore.{uuid.uuid4().hex}"
    attempts = 0

    async def send() -> Msg:
        nonlocal attempts
        attempts += 1
        return await nc.request(target, b"chunk", timeout=5)

    with pytest.raises(nats.errors.NoRespondersError):
        await until_taken(send, timeout=0.3)
    assert attempts > 1
