"""A session's output on the way to its owner: offsets, what is dropped, when the end is told (no sockets)."""

from __future__ import annotations

import asyncio

from mahavishnu.gateways.shell.live import BUFFER_CAP, Live
from mahavishnu.gateways.shell.protocol import READ_MAX
from mahavishnu.gateways.shell.session import Clock, Connection, Limits

LIMITS = Limits()


def live() -> Live:
    return Live(
        id="0" * 32,
        device="dev-1",
        identity="ann",
        role="operator",
        owner=Connection("mesh", "OPS", 9, "t"),
        clock=Clock(opened=0.0, last_input=0.0, last_seen=0.0),
    )


def test_a_read_returns_what_follows_its_offset_and_frees_what_came_before() -> None:
    session = live()
    session.add_output(b"hello ")
    session.add_output(b"world")
    first = session.output(0, LIMITS)
    assert (first.offset, first.data, first.ended) == (0, b"hello world", False)
    session.release(6)
    assert (session.base, bytes(session.buffer)) == (6, b"world")
    assert session.output(6, LIMITS).data == b"world"
    assert session.transcript.bytes_out == 11  # the trail has it all


def test_output_beyond_the_cap_drops_the_oldest_and_the_reader_learns_from_where() -> None:
    session = live()
    session.add_output(b"x" * (BUFFER_CAP + 10))
    assert session.base == 10 and session.end == BUFFER_CAP + 10
    output = session.output(0, LIMITS)
    assert output.offset == 10 and len(output.data) == READ_MAX


def test_the_end_is_told_with_the_last_output() -> None:
    session = live()
    session.add_output(b"x" * (READ_MAX + 3))
    session.ending, session.ended, session.exit_code = "exited", True, 0
    first = session.output(0, LIMITS)
    assert len(first.data) == READ_MAX and not first.ended  # more to read: not yet
    last = session.output(READ_MAX, LIMITS)
    assert (last.data, last.ended, last.reason, last.exit_code) == (b"xxx", True, "exited", 0)
    assert last.message == "the shell exited (status 0)"


async def test_a_waiting_read_wakes_on_output() -> None:
    session = live()
    waiting = asyncio.create_task(session.wait_output(0, 10))
    await asyncio.sleep(0)  # let the read start waiting: ordering, not timing
    session.add_output(b"!")
    await asyncio.wait_for(waiting, 1)
    await session.wait_output(0, 0)  # there is output already: no wait
