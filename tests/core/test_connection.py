"""Opening a connection: the first connection's deadline holds even when the cancelled attempt will not end."""

from __future__ import annotations

import asyncio

import pytest

from core.store.connection import _within


async def test_an_attempt_that_swallows_one_cancel_is_asked_again_and_ends() -> None:
    # What agents were seen doing under a reconnect storm: a cancelled nats-py connect that
    # went on (asyncio.wait_for can swallow a cancel on Python 3.11), so wait_for never returned.
    async def swallows_once() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.Event().wait()  # keeps waiting after its first cancel

    attempt = asyncio.ensure_future(swallows_once())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_within(attempt, 0.05, grace=5), 10)  # the outer deadline only guards the test
    assert attempt.cancelled()


async def test_an_attempt_that_never_ends_is_left_to_itself_at_its_deadline() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # swallows every cancel

    attempt = asyncio.ensure_future(stubborn())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_within(attempt, 0.05, grace=0.1), 10)
    assert not attempt.done()
    release.set()
    await attempt


async def test_an_attempt_that_ends_in_time_gives_its_result() -> None:
    async def answer() -> str:
        return "connected"

    assert await _within(asyncio.ensure_future(answer()), 5) == "connected"
