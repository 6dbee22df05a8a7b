"""The high-throughput append path: pipelined publishes with a bounded window of unacknowledged events.

Events are encoded into NATS frames ourselves and written a chunk at a time (one write,
a few TLS records, see core.store.wire), each with its own reply subject, so the
server acknowledges every event individually with its stream sequence and whether it
was a duplicate. At most `window` events are unacknowledged at any moment: when the
window is full, sending waits for acknowledgements. Every acknowledgement is checked.
If no acknowledgement arrives for `timeout` seconds, every unacknowledged event is sent
again with the same event id (the server deduplicates what it had already stored), up
to `retries` times, then the append fails naming how many events are unaccounted for.

Why not atomic batches here: measured on nats-server 2.15 with mTLS and an encrypted
store, per-message publishes written this way reach about 100,000 events/s and cost the
server 0.8 s of CPU per 100,000, where 1,000-message atomic batches reach about 65,000/s
at 1.4 s (docs/adr/0002-bulk-append-path.md). Atomicity is what `EventStore.append` of
several events is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.errors import AppendFailed
from core.events import Event, encode
from core.store import acks, fastbatch, wire
from core.store.acks import parse_pub_ack
from core.store.nats_errors import from_api_error, from_exception
from core.store.records import BulkReport
from core.store.wire import Message
from core.streams import StreamSpec, stream_for

HEADER_ROOM = 512  # bytes kept for the headers of a frame under the server's max_payload
CONNECTION_CHECK_S = 0.1  # while acknowledgements are awaited, how often the connection is checked
# JetStream announces each new leader of a replicated stream here (in the stream's account).
LEADER_ELECTED = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED."


class _Connection:
    """Tells whether the client has reconnected since this watch began: its old connection was lost.

    Frames written to a connection that dies are gone with its socket, and a cluster's
    other nodes never saw them: waiting out the acknowledgement timeout for them is time
    lost, so once the client is connected again (to whichever node it found) the appenders
    act at once: a fast batch fails, to be appended again; pipelined events are resent.
    """

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.reconnects = nc.stats["reconnects"]

    def lost(self) -> bool:
        return bool(self.nc.stats["reconnects"] != self.reconnects)


async def _progress_or_lost(progress: asyncio.Event, connection: _Connection, timeout: float) -> str:
    """Wait for `progress`: "" when it came, "lost" when the client reconnected first, "timeout" after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return "timeout"
        try:
            await asyncio.wait_for(progress.wait(), min(remaining, CONNECTION_CHECK_S))
            return ""
        except TimeoutError:
            if connection.lost():
                return "lost"


def messages(events: Iterable[Event], streams: tuple[StreamSpec, ...], max_payload: int) -> Iterator[Message]:
    """Encode events in order, checking that each has a stream and fits the server's max_payload (pure).

    AppendFailed names the first event that cannot be appended.
    """
    known: set[str] = set()  # subjects already matched to a stream; bulk appends repeat them a lot
    limit = max_payload - HEADER_ROOM
    for event in events:
        subject = event.subject()
        if subject not in known:
            try:
                stream_for(subject, streams)
            except ValueError as exc:
                raise AppendFailed(f"event {event.event_id} ({event.tag}): {exc}") from exc
            known.add(subject)
        payload = encode(event)
        if len(payload) > limit:
            raise AppendFailed(
                f"event {event.event_id} ({event.tag}) is {len(payload)} bytes, over the server's limit of "
                f"{limit}: keep large content out of events"
            )
        yield Message(subject, payload, event.event_id)


def frame(message: Message, reply: str) -> bytes:
    """The frame of one event, deduplicated by its id (pure)."""
    return wire.hpub(message.subject, reply, wire.header_block([(acks.MSG_ID, message.event_id)]), message.payload)


@dataclass
class _Tally:
    appended: int = 0
    duplicates: int = 0
    last_seq: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, seq: int, duplicate: bool) -> None:
        if duplicate:
            self.duplicates += 1
        else:
            self.appended += 1
        self.last_seq = max(self.last_seq, seq)

    def report(self) -> BulkReport:
        return BulkReport(
            acknowledged=self.appended + self.duplicates, last_seq=self.last_seq, duplicates=self.duplicates
        )


class PipelinedAppender:
    """Appends many events with one acknowledgement each; see the module docstring."""

    def __init__(
        self,
        nc: Client,
        streams: tuple[StreamSpec, ...],
        *,
        window: int = 8192,
        chunk: int = 512,
        timeout: float = 10.0,
        retries: int = 2,
    ) -> None:
        if window < 1 or chunk < 1:
            raise ValueError(f"window and chunk must be at least 1, not {window} and {chunk}")
        self.nc = nc
        self.streams = streams
        self.window = window
        self.chunk = min(chunk, window)
        self.timeout = timeout
        self.retries = retries
        self._pending: dict[int, Message] = {}
        self._progress = asyncio.Event()
        self._connection = _Connection(nc)
        self._tally = _Tally()
        self._prefix = ""
        self._next = 0

    async def append(self, events: Iterable[Event]) -> BulkReport:
        """Append every event; AppendFailed (with `.report`) if any could not be stored."""
        self._prefix = self.nc.new_inbox() + "."
        self._connection = _Connection(self.nc)
        sub = await self.nc.subscribe(self._prefix + "*", cb=self._on_ack)
        try:
            batch: list[Message] = []
            for message in messages(events, self.streams, self.nc.max_payload or 1024 * 1024):
                batch.append(message)
                if len(batch) >= self.chunk:
                    await self._send(batch)
                    batch = []
                if self._tally.failures:
                    break
            if batch and not self._tally.failures:
                await self._send(batch)
            await self._drain(0)
        finally:
            await sub.unsubscribe()
        if self._tally.failures:
            error = AppendFailed(
                f"bulk append stopped: {self._tally.failures[0]} ({len(self._tally.failures)} event(s) failed, "
                f"{self._tally.appended + self._tally.duplicates} acknowledged)"
            )
            error.report = self._tally.report()  # type: ignore[attr-defined]
            raise error
        return self._tally.report()

    async def _send(self, batch: list[Message]) -> None:
        await self._drain(self.window - len(batch))
        buffer = bytearray()
        for message in batch:
            self._pending[self._next] = message
            buffer += frame(message, f"{self._prefix}{self._next}")
            self._next += 1
        await self._write(bytes(buffer))

    async def _drain(self, at_most: int) -> None:
        """Wait until at most `at_most` events are unacknowledged, resending them when acknowledgements stop."""
        resent = 0
        while len(self._pending) > at_most and not self._tally.failures:
            self._progress.clear()
            waited = await _progress_or_lost(self._progress, self._connection, self.timeout)
            if not waited:
                resent = 0
                continue
            if resent == self.retries:
                self._tally.failures.append(
                    f"no acknowledgement for {len(self._pending)} event(s) after {self.retries + 1} tries"
                )
                return
            resent += 1
            if waited == "lost":  # the client is connected again: resend there, and watch the new connection
                self._connection = _Connection(self.nc)
            await self._resend()

    async def _resend(self) -> None:
        """Send every unacknowledged event again under its old reply subject; the server deduplicates."""
        buffer = bytearray()
        for index, message in list(self._pending.items()):
            buffer += frame(message, f"{self._prefix}{index}")
        await self._write(bytes(buffer))

    async def _write(self, frames: bytes) -> None:
        try:
            await wire.write(self.nc, frames)
        except nats.errors.Error as exc:
            raise from_exception(exc, doing="bulk append", appending=True) from exc

    async def _on_ack(self, msg: Msg) -> None:
        message = self._pending.pop(int(msg.subject[len(self._prefix) :]), None)
        if message is None:
            return  # a second acknowledgement of a resent event: already counted
        self._progress.set()
        if not msg.data:  # a status message: 503 means no stream listens on the subject
            status = (msg.headers or {}).get("Status", "no answer")
            self._tally.failures.append(f"no stream acknowledged {message.subject} (status {status})")
            return
        ack = parse_pub_ack(msg.data)
        if ack.error is not None:
            self._tally.failures.append(str(from_api_error(ack.error, subject=message.subject)))
            return
        self._tally.add(ack.seq, ack.duplicate)


class FastBatchAppender:
    """Appends many events as fast batches, one per run of events into the same stream (core.store.fastbatch).

    At most `window` events are sent beyond the last acknowledged one; the server
    acknowledges every `flow`. A batch the server abandons (a refused message, a gap) or
    that stops being acknowledged for `timeout` seconds fails the append; what was
    acknowledged before is stored, and a retry of the same events deduplicates it. So
    does, at once, a batch whose connection was lost or whose stream (replicated, in a
    cluster) elected a new leader meanwhile: the batch lived on the old one. The leader
    advisories are read with the caller's identity; one not allowed to subscribe to
    `$JS.EVENT.>` (a device) gets a permissions error from the server and the timeout.
    """

    def __init__(
        self,
        nc: Client,
        streams: tuple[StreamSpec, ...],
        *,
        flow: int = 100,
        window: int = 2000,
        chunk: int = 500,
        timeout: float = 10.0,
    ) -> None:
        if not 1 <= flow <= window or chunk < 1:
            raise ValueError(f"need 1 <= flow <= window and chunk >= 1, not {flow}, {window}, {chunk}")
        self.nc = nc
        self.streams = streams
        self.flow = flow
        self.window = window
        self.chunk = chunk
        self.timeout = timeout
        self._acked = 0
        self._final: fastbatch.Frame | None = None
        self._failure = ""
        self._progress = asyncio.Event()
        self._connection = _Connection(nc)

    async def append(self, events: Iterable[Event]) -> BulkReport:
        """Append every event; AppendFailed (with `.report`) if any could not be stored."""
        acknowledged = last_seq = 0
        encoded = messages(events, self.streams, self.nc.max_payload or 1024 * 1024)
        for run in runs_by_stream(encoded, self.streams):
            last_seq = await self._publish(run, acknowledged)
            acknowledged += len(run)
        return BulkReport(acknowledged=acknowledged, last_seq=last_seq)

    async def _publish(self, run: list[Message], acknowledged_before: int) -> int:
        inbox = fastbatch.new_batch_inbox(self.nc.new_inbox())
        self._acked, self._final, self._failure = 0, None, ""
        self._connection = _Connection(self.nc)
        sub = await self.nc.subscribe(inbox + ".>", cb=self._on_frame)
        stream = stream_for(run[0].subject, self.streams).name
        elected = await self.nc.subscribe(LEADER_ELECTED + stream, cb=self._on_new_leader)
        try:
            total = len(run)
            for start in range(0, total, self.chunk):
                part = run[start : start + self.chunk]
                frames = fastbatch.frames(part, inbox=inbox, flow=self.flow, first_seq=start + 1, last_seq=total)
                try:
                    await wire.write(self.nc, frames)
                except nats.errors.Error as exc:
                    raise from_exception(exc, doing="bulk append", appending=True) from exc
                while not self._failure and start + len(part) - self._acked > self.window:
                    await self._await_progress()
                if self._failure:
                    break
            while not self._failure and self._final is None:
                await self._await_progress()
        finally:
            await sub.unsubscribe()
            await elected.unsubscribe()
        final = self._final
        if not self._failure and final is not None:
            if final.error is not None:
                self._failure = str(from_api_error(final.error, subject=run[0].subject))
            elif final.count != total:
                self._failure = f"the server ended the batch after {final.count} of {total} events"
        if self._failure:
            stored = acknowledged_before + (final.count if final is not None and final.error is None else self._acked)
            error = AppendFailed(
                f"bulk append stopped: {self._failure}; at least {stored} events were stored, "
                "append the same events again to complete (stored ones are deduplicated)"
            )
            error.report = BulkReport(acknowledged=stored, last_seq=final.seq if final else 0)  # type: ignore[attr-defined]
            raise error
        assert final is not None
        return final.seq

    async def _await_progress(self) -> None:
        self._progress.clear()
        waited = await _progress_or_lost(self._progress, self._connection, self.timeout)
        if waited == "timeout":
            self._failure = f"no acknowledgement for {self.timeout:g} s"
        elif waited == "lost":  # what was written to the lost connection is gone: the batch cannot complete
            self._failure = "the connection to the server was lost during the batch (the client has reconnected)"

    async def _on_new_leader(self, _: Msg) -> None:
        """A batch lives on the stream's leader: under a new one it can never complete, so it fails at once."""
        if not self._failure and self._final is None:
            self._failure = "the stream elected a new leader during the batch"
            self._progress.set()

    async def _on_frame(self, msg: Msg) -> None:
        self._progress.set()
        if not msg.data:  # a status message: 503 means no stream listens on the subject
            self._failure = f"no stream answered (status {(msg.headers or {}).get('Status', 'none')})"
            return
        frame = fastbatch.parse_frame(msg.data)
        if frame.type == "ack":
            self._acked = max(self._acked, frame.seq)
        elif frame.type == "gap":
            self._failure = f"the server saw a gap after batch message {frame.last_seq}"
        elif frame.type == "err" and frame.error is not None:
            self._failure = f"message {frame.seq} refused: {frame.error.description} (code {frame.error.err_code})"
        elif frame.terminal:
            self._final = frame


def runs_by_stream(encoded: Iterable[Message], streams: tuple[StreamSpec, ...]) -> Iterator[list[Message]]:
    """Split messages, in order, into runs that stay within one stream (pure)."""
    run: list[Message] = []
    current = ""
    stream_of: dict[str, str] = {}
    for message in encoded:
        stream = stream_of.get(message.subject)
        if stream is None:
            stream = stream_of[message.subject] = stream_for(message.subject, streams).name
        if run and stream != current:
            yield run
            run = []
        current = stream
        run.append(message)
    if run:
        yield run
