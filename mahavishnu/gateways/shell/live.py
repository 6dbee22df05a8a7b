"""One session as the broker holds it: its owner, its clock, and its output on the way to the owner.

What the agent prints goes to the session's transcript (for the trail) and to a buffer the
owner reads by offset: what the owner has read (a read `after` it) is dropped, and beyond
BUFFER_CAP unread bytes the oldest are dropped (never from the trail). A waiting read
waits on `changed`, an Event replaced at every change, so each change wakes every waiting
read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from mahavishnu.gateways.shell.protocol import READ_MAX, Output
from mahavishnu.gateways.shell.session import Clock, Connection, Limits, explain
from mahavishnu.gateways.shell.transcript import Transcript

BUFFER_CAP = 1024 * 1024  # output not yet read by the owner; beyond it the oldest is dropped (never from the trail)


@dataclass
class Live:
    """One session: who owns it, its times, its unread output and how far it has got in ending."""

    id: str
    device: str
    identity: str
    role: str
    owner: Connection
    clock: Clock
    shell: str = ""
    pid: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    base: int = 0  # stream offset of buffer[0]
    transcript: Transcript = field(default_factory=Transcript)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    device_done: asyncio.Event = field(default_factory=asyncio.Event)
    told: asyncio.Event = field(default_factory=asyncio.Event)  # a read answered with the end
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)
    ending: str = ""  # why it is ending (input refused from then on)
    ended: bool = False  # ended and recorded: readers may hear so
    ended_at: float = 0.0
    exit_code: int | None = None
    last_ping: float = 0.0
    # Opened by a broker that crashed (mahavishnu.gateways.shell.journal): being ended. What its
    # shell prints until then reached nobody and is dropped, so the trail's numbering stays the
    # previous broker's.
    restored: bool = False

    @property
    def end(self) -> int:
        return self.base + len(self.buffer)

    def add_output(self, data: bytes) -> None:
        if self.restored:
            return
        self.transcript.add("output", data)
        self.buffer += data
        if len(self.buffer) > BUFFER_CAP:
            dropped = len(self.buffer) - BUFFER_CAP
            del self.buffer[:dropped]
            self.base += dropped
        self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def touch(self, now: float, *, typed: bool = False) -> None:
        self.clock = Clock(opened=self.clock.opened, last_input=now if typed else self.clock.last_input, last_seen=now)

    def release(self, after: int) -> None:
        """Drop what the owner has read: the output before offset `after`."""
        if after > self.base:
            drop = min(after, self.end) - self.base
            del self.buffer[:drop]
            self.base += drop

    async def wait_output(self, after: int, timeout: float) -> None:
        """Until there is output beyond offset `after`, the session has ended, or `timeout` seconds went by."""
        deadline = time.monotonic() + timeout
        while self.end <= after and not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), remaining)

    def output(self, after: int, limits: Limits) -> Output:
        """Up to READ_MAX bytes from `after` (from the oldest kept, if that was dropped); once all is read, the end."""
        start = max(after, self.base)
        data = bytes(self.buffer[start - self.base : start - self.base + READ_MAX])
        finished = self.ended and start + len(data) >= self.end
        return Output(
            offset=start,
            data=data,
            ended=finished,
            reason=self.ending if finished else "",
            message=explain(self.ending, limits, self.exit_code) if finished else "",
            exit_code=self.exit_code if finished else None,
        )
