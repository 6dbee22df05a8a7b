"""The high-throughput append path: pipelined atomic batches with a bounded window.

Events are grouped, in order, into atomic batches of one stream each. Up to `window`
batches are in flight; when the window is full the oldest acknowledgement is awaited
and checked before anything more is sent, so memory stays bounded and a failure
stops the flow early. Each acknowledgement must account for every message of its
batch. A batch whose acknowledgement does not come in time is sent again with the
same event ids: if it had been stored, the server deduplicates it (the whole batch is
refused as a duplicate, and each message is then confirmed one by one).

With `batch_size=1` (servers without atomic batches) each event is its own publish,
acknowledged individually, with the same window.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.errors import AppendFailed
from core.events import Event, encode
from core.store import acks, wire
from core.store.acks import PubAck, parse_pub_ack
from core.store.batch import MAX_ATOMIC_BATCH, Message, send_batch, single_frame
from core.store.nats_errors import from_api_error, from_exception
from core.store.records import BulkReport
from core.streams import StreamSpec, stream_for

HEADER_ROOM = 512  # bytes kept for the headers of a frame under the server's max_payload


def batches(
    events: Iterable[Event], streams: tuple[StreamSpec, ...], size: int, max_payload: int = 1024 * 1024
) -> Iterator[list[Message]]:
    """Group events, in order, into runs of at most `size` messages that stay within one stream (pure).

    AppendFailed names an event too large for the server's max_payload.
    """
    current: list[Message] = []
    current_stream = ""
    stream_of: dict[str, str] = {}  # subject -> stream; bulk appends repeat subjects a lot
    for event in events:
        subject = event.subject()
        stream = stream_of.get(subject)
        if stream is None:
            stream = stream_of[subject] = stream_for(subject, streams).name
        if current and (stream != current_stream or len(current) >= size):
            yield current
            current = []
        current_stream = stream
        payload = encode(event)
        if len(payload) > max_payload - HEADER_ROOM:
            raise AppendFailed(
                f"event {event.event_id} ({event.tag}) is {len(payload)} bytes, over the server's limit of "
                f"{max_payload - HEADER_ROOM}: keep large content out of events"
            )
        current.append(Message(subject, payload, event.event_id))
    if current:
        yield current


@dataclass
class _Tally:
    appended: int = 0
    duplicates: int = 0
    batches: int = 0
    first_seq: int = 0
    last_seq: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, ack: PubAck, size: int) -> None:
        self.batches += 1
        if ack.duplicate:
            self.duplicates += size
        else:
            self.appended += size
        first = ack.seq - size + 1
        self.first_seq = first if not self.first_seq else min(self.first_seq, first)
        self.last_seq = max(self.last_seq, ack.seq)

    def report(self) -> BulkReport:
        return BulkReport(self.appended, self.duplicates, self.batches, self.first_seq, self.last_seq)


class BulkAppender:
    """Appends many events quickly; see the module docstring for the protocol."""

    def __init__(
        self,
        nc: Client,
        streams: tuple[StreamSpec, ...],
        *,
        batch_size: int = 500,
        window: int = 8,
        timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        if not 1 <= batch_size <= MAX_ATOMIC_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_ATOMIC_BATCH}, not {batch_size}")
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.nc = nc
        self.streams = streams
        self.batch_size = batch_size
        self.window = window
        self.timeout = timeout
        self.retries = retries
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._tokens = itertools.count()
        self._inbox = ""

    async def append(self, events: Iterable[Event]) -> BulkReport:
        """Append every event; AppendFailed (with `.report`) if any could not be stored."""
        self._inbox = self.nc.new_inbox() + "."
        sub = await self.nc.subscribe(self._inbox + "*", cb=self._on_reply)
        tally = _Tally()
        in_flight: deque[tuple[list[Message], asyncio.Future[bytes]]] = deque()
        try:
            for batch in batches(events, self.streams, self.batch_size, self.nc.max_payload or 1024 * 1024):
                while len(in_flight) >= self.window:
                    await self._settle(*in_flight.popleft(), tally)
                if tally.failures:
                    break  # stop sending; still settle what is in flight below
                in_flight.append((batch, await self._send(batch)))
            while in_flight:
                await self._settle(*in_flight.popleft(), tally)
        finally:
            await sub.unsubscribe()
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        if tally.failures:
            error = AppendFailed(
                f"bulk append stopped: {tally.failures[0]} ({len(tally.failures)} batch(es) failed, "
                f"{tally.appended + tally.duplicates} events acknowledged)"
            )
            error.report = tally.report()  # type: ignore[attr-defined]
            raise error
        return tally.report()

    async def _send(self, batch: list[Message]) -> asyncio.Future[bytes]:
        if self.batch_size == 1:
            return await self._send_one(batch[0])
        token = str(next(self._tokens))
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            await send_batch(self.nc, batch, reply=self._inbox + token)
        except nats.errors.Error as exc:
            raise from_exception(exc, doing=f"bulk append on {batch[0].subject}") from exc
        return future

    async def _send_one(self, message: Message) -> asyncio.Future[bytes]:
        """Publish one message on its own (not in a batch), acknowledged individually."""
        token = str(next(self._tokens))
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            await wire.write(self.nc, single_frame(message, reply=self._inbox + token))
        except nats.errors.Error as exc:
            raise from_exception(exc, doing=f"append on {message.subject}") from exc
        return future

    async def _on_reply(self, msg: Msg) -> None:
        future = self._pending.pop(msg.subject[len(self._inbox) :], None)
        if future is not None and not future.done():
            future.set_result(msg.data)

    async def _settle(self, batch: list[Message], future: asyncio.Future[bytes], tally: _Tally) -> None:
        """Await one batch's acknowledgement and account for it; resend on a lost acknowledgement."""
        for attempt in range(self.retries + 1):
            try:
                ack = parse_pub_ack(await asyncio.wait_for(future, self.timeout))
                break
            except TimeoutError:
                if attempt == self.retries:
                    tally.failures.append(
                        f"no acknowledgement for a batch of {len(batch)} on {batch[0].subject} "
                        f"after {self.retries + 1} tries"
                    )
                    return
                future = await self._send(batch)  # same event ids: a stored batch is deduplicated
        if ack.error is not None and ack.error.err_code == acks.ERR_BATCH_DUPLICATE_MSG_ID:
            await self._confirm_each(batch, tally)
            return
        if ack.error is not None:
            tally.failures.append(str(from_api_error(ack.error, subject=batch[0].subject)))
            return
        size = 1 if self.batch_size == 1 else ack.count
        if size != len(batch):
            tally.failures.append(f"the server stored {ack.count} of a batch of {len(batch)}")
            return
        tally.add(ack, size)

    async def _confirm_each(self, batch: list[Message], tally: _Tally) -> None:
        """A batch refused for duplicate ids: append each message alone, pipelined; each is deduplicated alone."""
        futures = [await self._send_one(message) for message in batch]
        for message, future in zip(batch, futures, strict=True):
            try:
                ack = parse_pub_ack(await asyncio.wait_for(future, self.timeout))
            except TimeoutError:
                tally.failures.append(f"no acknowledgement for the append on {message.subject}")
                continue
            if ack.error is not None:
                tally.failures.append(str(from_api_error(ack.error, subject=message.subject)))
                continue
            tally.add(ack, 1)
