"""Who may run a query now: a fair share for each caller, a bounded wait, and a clear refusal beyond it.

Both query doors (NATS and HTTP) admit through one Admission per process. At most
`slots` queries run at once. A query that finds every slot taken waits in its caller's
own line, and a freed slot goes to the callers in turn (round robin), whatever the
length of their lines: an operator firing 10,000 queries at once waits behind nobody
but itself, and another operator's query is next at the first free slot.

The lines are bounded. A caller with `per_caller` queries already waiting is refused
with 429 (slow down), and when `total` queries wait in all, anyone more is refused with
503 (the service is saturated). A refusal is immediate, so it never holds a connection
or a subscription, and the doors audit it like any other refused query.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from projections.reading import QueryError

SLOTS = 64  # queries answered at once: reads overlap the audit record, and SQLite reads in threads
PER_CALLER = 256  # queries one caller may have waiting
TOTAL = 4096  # queries waiting in all


class Refused(QueryError):
    """Turned away at the door, 429 (this caller has too many waiting) or 503 (everyone has): audited by the door."""


class Admission:
    def __init__(self, *, slots: int = SLOTS, per_caller: int = PER_CALLER, total: int = TOTAL) -> None:
        self.slots = slots
        self.per_caller = per_caller
        self.total = total
        self._free = slots
        self._lines: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()  # in turn order
        self._waiting = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @asynccontextmanager
    async def slot(self, caller: str) -> AsyncIterator[None]:
        """Hold one slot for `caller` while the block runs; Refused (429 or 503) at once when the lines are full."""
        await self._enter(caller)
        try:
            yield
        finally:
            self._release()

    async def _enter(self, caller: str) -> None:
        if self._free > 0 and not self._lines:
            self._free -= 1
            return
        line = self._lines.get(caller)
        if line is not None and len(line) >= self.per_caller:
            raise Refused(
                429, f"{caller} has {len(line)} queries waiting already; wait for their answers before asking more"
            )
        if self._waiting >= self.total:
            raise Refused(503, f"the query service has {self._waiting} queries waiting; try again shortly")
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if line is None:
            line = self._lines[caller] = deque()
        line.append(turn)
        self._waiting += 1
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # the slot was handed over as we were cancelled: pass it on
            else:
                self._forget(caller, turn)
            raise

    def _release(self) -> None:
        """Hand the freed slot to the caller whose turn it is, or keep it free."""
        while self._lines:
            caller, line = next(iter(self._lines.items()))
            turn = line.popleft()
            self._waiting -= 1
            if line:
                self._lines.move_to_end(caller)  # the others go first next time
            else:
                del self._lines[caller]
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1

    def _forget(self, caller: str, turn: asyncio.Future[None]) -> None:
        line = self._lines.get(caller)
        if line is not None and turn in line:
            line.remove(turn)
            self._waiting -= 1
            if not line:
                del self._lines[caller]
