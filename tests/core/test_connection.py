"""Opening a connection: the first connection's deadline holds even when the cancelled attempt never ends."""

from __future__ import annotations

import asyncio

import pytest

from core.store.connection import _within


async def test_a_first_connection_that_ignores_its_cancel_still_ends_at_its_deadline() -> None:
    # What agents were seen doing under a reconnect storm: a cancelled nats-py connect that
    # swallowed the cancel and kept waiting, so asyncio.wait_for never returned.
    never = asyncio.get_running_loop().create_future()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await never  # keeps waiting after its cancel

    attempt = asyncio.ensure_future(stubborn())
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(_within(attempt, 0.05, grace=0.05), 5)  # the outer deadline only guards the test itself
    assert not attempt.done()
    never.set_result(None)
    await attempt


async def test_an_attempt_that_ends_in_time_gives_its_result() -> None:
    async def answer() -> str:
        return "connected"

    assert await _within(asyncio.ensure_future(answer()), 5) == "connected"
