"""The event store: JetStream streams as the only source of truth.

    store = EventStore(nc)
    await store.ensure_streams()
    [appended] = await store.append(event, expected_last_subject_seq=0)
    async for stored in store.read("mesh.evt.device.dev-a.>", from_seq=1):
        ...
    await store.audit.record(actor="control", category="identity", action="device.enroll")

Every append carries the event id as `Nats-Msg-Id`, so a retried append inside the
stream's duplicate window is stored once. Several events in one `append` call are one
atomic batch (ADR-50): all stored or none. The high-throughput path is `append_many`
(core.store.bulk).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import time
from collections import Counter
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from core.errors import AppendFailed, ConcurrencyConflict, StoreError, StreamConfigError
from core.events import Event, EventDecodeError, decode, encode
from core.store import acks
from core.store.acks import PubAck, parse_pub_ack
from core.store.batch import MAX_ATOMIC_BATCH, publish_atomic_batch
from core.store.chained import publish_chained, refusal
from core.store.direct import read_after
from core.store.nats_errors import from_api_error, from_exception
from core.store.records import Appended, BulkReport, StoredEvent
from core.store.replay import RawMessage, reader_config, replay
from core.store.wire import Message
from core.streams import StreamSpec, default_streams, stream_for, stream_for_filter

if TYPE_CHECKING:  # an edge agent uses the store and must not load prometheus-client (tests/edge/test_isolation.py)
    from core.audit import AuditTrail
    from core.metrics import EventStoreMetrics

# Backoff while no responder answers (a reloading or restarting server): about 1.5 s in all.
NO_RESPONDERS_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8)


class EventStore:
    """Appends events to and reads them from the mesh's JetStream streams."""

    def __init__(
        self,
        nc: Client,
        streams: tuple[StreamSpec, ...] | None = None,
        *,
        timeout: float = 5.0,
        metrics: EventStoreMetrics | None = None,
    ) -> None:
        self.nc = nc
        self.metrics = metrics
        self.js = nc.jetstream(timeout=timeout)
        self.streams = streams if streams is not None else default_streams()
        self.timeout = timeout
        # Learned in ensure_streams(): servers drop the options they do not know from the
        # config they apply (allow_atomic before 2.12, allow_batched before 2.14).
        self.atomic_batches = True
        self.fast_batches = True
        # Event ids sent in a fast batch that failed, and when: their retry goes event by event
        # (see append_many), for as long as the server may remember them as duplicates.
        self._unsettled: dict[str, float] = {}

    @functools.cached_property
    def audit(self) -> AuditTrail:
        """The audit trail of this store, made on first use: every recorder in the process appends through it.

        One trail per store, not one per call, because a trail's group commit and its
        remembered end of the chain only work for the records that go through it: separate
        trails on one store each pay a round-trip per record and race each other for the
        end of the chain, as separate processes do. (The chain stays one line either way.)
        """
        from core.audit import AuditTrail  # core.audit builds on the store; an edge agent never loads it

        return AuditTrail(self)

    # --- streams -------------------------------------------------------------

    async def ensure_streams(self) -> None:
        """Create each stream, or update it to our definition; idempotent. StreamConfigError on refusal."""
        for spec in self.streams:
            config = spec.as_config()
            created = await self._api(f"$JS.API.STREAM.CREATE.{spec.name}", config)
            error = created.get("error")
            if error and error.get("err_code") == acks.ERR_STREAM_NAME_IN_USE:
                created = await self._api(f"$JS.API.STREAM.UPDATE.{spec.name}", config)
                error = created.get("error")
            if error:
                raise StreamConfigError(
                    f"cannot create or update stream {spec.name}: {error.get('description')} "
                    f"(code {error.get('err_code')}); fix the [jetstream] settings or migrate the stream"
                )
            applied = created.get("config", {})
            self.atomic_batches = self.atomic_batches and bool(applied.get("allow_atomic"))
            self.fast_batches = self.fast_batches and bool(applied.get("allow_batched"))

    async def ensure_durable(self, stream: str, name: str, config: dict[str, object]) -> None:
        """Create or update the durable consumer `name` on `stream`; idempotent. StreamConfigError on refusal.

        `config` is the JetStream consumer configuration (durations in nanoseconds).
        """
        reply = await self._api(
            f"$JS.API.CONSUMER.CREATE.{stream}.{name}",
            {"stream_name": stream, "config": {**config, "durable_name": name}},
        )
        if "error" in reply:
            error = reply["error"]
            raise StreamConfigError(
                f"cannot create consumer {name} on {stream}: {error.get('description')} (code {error.get('err_code')})"
            )

    async def last_event(self, subject: str) -> Event | None:
        """The last event stored on exactly `subject`, None when there is none or it does not decode."""
        spec = stream_for(subject, self.streams)
        reply = await self._api(f"$JS.API.STREAM.MSG.GET.{spec.name}", {"last_by_subj": subject})
        if "error" in reply:
            return None
        try:
            return decode(base64.b64decode(reply["message"]["data"]))
        except EventDecodeError:
            return None

    async def message_data(self, stream: str, seq: int) -> bytes:
        """The payload of message `seq` of `stream`; StoreError when it is not there."""
        reply = await self._api(f"$JS.API.STREAM.MSG.GET.{stream}", {"seq": seq})
        if "error" in reply:
            raise StoreError(f"message {seq} of {stream} cannot be read: {reply['error'].get('description')}")
        return base64.b64decode(reply["message"]["data"])

    async def append_after(self, event: Event, *, expected_last_seq: int) -> Appended:
        """Append one event only if its stream's last sequence is `expected_last_seq`; else ConcurrencyConflict."""
        with self._measured([event]):
            return await self._append_after(event, expected_last_seq)

    async def _append_after(self, event: Event, expected_last_seq: int) -> Appended:
        subject = event.subject()
        headers = {acks.MSG_ID: event.event_id, acks.EXPECTED_LAST_SEQ: str(expected_last_seq)}
        ack = await self._request(subject, encode(event), headers)
        if ack.error is not None:
            raise from_api_error(ack.error, subject=subject, expected=expected_last_seq)
        return Appended(ack.stream, ack.seq, subject, event.event_id, ack.duplicate)

    async def append_chain(
        self, events: Sequence[Event], *, after_seq: int
    ) -> tuple[list[Appended], StoreError | None]:
        """Append events of one stream one right after the other, the first right after sequence `after_seq`.

        What a hash chain needs (core.store.chained): they are pipelined, and what is stored
        is always a prefix, each event directly after the one before it. Returns that prefix
        and, when it stopped short, why: ConcurrencyConflict when another writer got in
        first. Raises AppendFailed or StoreUnavailable when the server
        did not answer: then any of them may or may not be stored.
        """
        if not events:
            return [], None
        streams = {stream_for(e.subject(), self.streams).name for e in events}
        if len(streams) > 1:
            raise AppendFailed(f"a chained append stays in one stream, not {sorted(streams)}")
        messages = [Message(e.subject(), encode(e), e.event_id) for e in events]
        with self._measured(events):
            try:
                chain = await publish_chained(self.nc, messages, after_seq=after_seq, timeout=self.timeout)
            except nats.errors.Error as exc:  # the connection closed under it, say: may or may not be stored
                raise from_exception(exc, doing=f"append to {messages[0].subject}", appending=True) from exc
        prefix = zip(chain.stored(), messages, strict=False)
        stored = [Appended(a.stream, a.seq, m.subject, m.event_id) for a, m in prefix]
        return stored, refusal(chain, messages, after_seq)

    async def delete_message(self, stream: str, seq: int) -> bool:
        """Remove one message from `stream` (AUDIT refuses: it is append-only); False if it was not there."""
        reply = await self._api(f"$JS.API.STREAM.MSG.DELETE.{stream}", {"seq": seq, "no_erase": True})
        return bool(reply.get("success"))

    async def delivered_sequence(self, stream: str, consumer: str) -> int:
        """The last stream sequence the durable `consumer` delivered (0 if none or no such consumer)."""
        reply = await self._api(f"$JS.API.CONSUMER.INFO.{stream}.{consumer}", {})
        return int(reply.get("delivered", {}).get("stream_seq", 0))

    async def last_sequence(self, stream: str) -> int:
        """The last sequence stored in `stream` (0 when empty)."""
        return (await self.bounds(stream))[1]

    async def bounds(self, stream: str) -> tuple[int, int]:
        """The first and last sequences still stored in `stream` (older ones aged out)."""
        info = await self._api(f"$JS.API.STREAM.INFO.{stream}", {})
        if "error" in info:
            raise StoreError(f"cannot read stream {stream}: {info['error'].get('description')}")
        return int(info["state"]["first_seq"]), int(info["state"]["last_seq"])

    async def last_subject_sequence(self, subject: str) -> int:
        """The sequence of the last message on exactly `subject` (0 if none): the value for optimistic concurrency."""
        spec = stream_for(subject, self.streams)
        reply = await self._api(f"$JS.API.STREAM.MSG.GET.{spec.name}", {"last_by_subj": subject})
        error = reply.get("error")
        if error:
            if error.get("code") == 404:
                return 0
            raise StoreError(f"cannot read the last message of {subject}: {error.get('description')}")
        return int(reply["message"]["seq"])

    async def _api(self, subject: str, body: dict[str, object]) -> dict[str, Any]:
        reply = await self._send(subject, msgspec.json.encode(body), None, doing=f"JetStream API {subject}")
        return msgspec.json.decode(reply.data)  # type: ignore[no-any-return]

    async def _send(
        self, subject: str, payload: bytes, headers: dict[str, str] | None, *, doing: str, appending: bool = False
    ) -> Msg:
        """A request to JetStream, retried for a moment while nothing answers.

        No responders means the request reached no stream or API, so it changed nothing: a
        server that is reloading its configuration or restarting answers again within moments.
        """
        for delay in (*NO_RESPONDERS_RETRIES, None):
            try:
                return await self.nc.request(subject, payload, timeout=self.timeout, headers=headers)
            except nats.errors.NoRespondersError as exc:
                if delay is None:
                    raise from_exception(exc, doing=doing, appending=appending) from exc
                await asyncio.sleep(delay)
            except (TimeoutError, nats.errors.Error) as exc:
                raise from_exception(exc, doing=doing, appending=appending) from exc
        raise AssertionError("unreachable")

    # --- append --------------------------------------------------------------

    async def append(
        self, events: Event | Sequence[Event], *, expected_last_subject_seq: int | None = None
    ) -> list[Appended]:
        """Append one event, or several as one atomic batch (all stored or none).

        `expected_last_subject_seq` is checked against the subject of the first event
        (0: the subject must be empty); a mismatch raises ConcurrencyConflict and stores nothing.
        Raises AppendFailed when the server refuses, StoreUnavailable when it cannot be reached.
        """
        batch = [events] if isinstance(events, Event) else list(events)
        if not batch:
            return []
        with self._measured(batch):
            return await self._append(batch, expected_last_subject_seq)

    @contextlib.contextmanager
    def _measured(self, batch: Sequence[Event]) -> Iterator[None]:
        """Count and time one append in the metrics, if any; a concurrency conflict is an answer, not a failure."""
        if self.metrics is None or not batch:
            yield
            return
        stream = stream_for(batch[0].subject(), self.streams).name
        with self.metrics.time_append(stream, len(batch), answers=(ConcurrencyConflict,)):
            yield

    async def _append(self, batch: list[Event], expected_last_subject_seq: int | None) -> list[Appended]:
        if len(batch) == 1:
            return [await self._append_one(batch[0], expected_last_subject_seq)]
        if len(batch) > MAX_ATOMIC_BATCH:
            raise AppendFailed(
                f"an atomic append holds at most {MAX_ATOMIC_BATCH} events, not {len(batch)}: "
                "use append_many for bulk appends"
            )
        streams = {stream_for(e.subject(), self.streams).name for e in batch}
        if len(streams) > 1:
            raise AppendFailed(f"an atomic append must stay in one stream, these events span {sorted(streams)}")
        if not self.atomic_batches:
            return await self._append_each(batch, expected_last_subject_seq)
        return await self._append_atomic(batch, expected_last_subject_seq)

    async def _append_one(self, event: Event, expected: int | None) -> Appended:
        subject = event.subject()
        headers = {acks.MSG_ID: event.event_id}
        if expected is not None:
            headers[acks.EXPECTED_LAST_SUBJECT_SEQ] = str(expected)
        ack = await self._request(subject, encode(event), headers)
        if ack.error is not None:
            raise from_api_error(ack.error, subject=subject, expected=expected)
        return Appended(ack.stream, ack.seq, subject, event.event_id, ack.duplicate)

    async def _append_each(self, batch: Sequence[Event], expected: int | None) -> list[Appended]:
        appended = [await self._append_one(batch[0], expected)]
        for event in batch[1:]:
            appended.append(await self._append_one(event, None))
        return appended

    async def _append_atomic(self, batch: Sequence[Event], expected: int | None) -> list[Appended]:
        messages = [Message(e.subject(), encode(e), e.event_id) for e in batch]
        ack = await publish_atomic_batch(self.nc, messages, expected=expected, timeout=self.timeout)
        if ack.error is not None:
            if ack.error.err_code == acks.ERR_BATCH_DUPLICATE_MSG_ID:
                # A retry of a batch that was stored: each message is acknowledged as a duplicate
                # with its original sequence when appended alone.
                return await self._append_each(batch, expected)
            raise from_api_error(ack.error, subject=batch[0].subject(), expected=expected)
        if ack.count != len(batch):
            raise AppendFailed(f"the server stored {ack.count} of an atomic batch of {len(batch)}")
        first = ack.seq - len(batch) + 1
        return [Appended(ack.stream, first + i, e.subject(), e.event_id) for i, e in enumerate(batch)]

    async def _request(self, subject: str, payload: bytes, headers: dict[str, str]) -> PubAck:
        reply = await self._send(subject, payload, headers, doing=f"append on {subject}", appending=True)
        return parse_pub_ack(reply.data)

    async def append_many(self, events: Iterable[Event], *, pipelined: bool = False) -> BulkReport:
        """The high-throughput path, in the order given, every acknowledgement awaited and checked.

        Fast batch publishing where the server supports it (2.14+), else pipelined publishes
        with one acknowledgement each (`pipelined=True` forces those, which also report
        duplicates per event); both bound the events in flight and deduplicate retries by
        event id. Raises AppendFailed if any event could not be stored, with `.report` of
        what was. See core.store.bulk.

        A retry of events whose fast batch failed goes event by event. A fast batch counts a
        message whose id the server has seen as stored, and in a cluster the server notes an
        id when its leader proposes the message, before it is stored: a proposal lost to a
        node's death then makes the retry "a duplicate" of nothing, and the events vanish with
        a successful acknowledgement (nats-server 2.15, processJetStreamBatchMsg; found by
        tests/mahavishnu/runtime/test_hosts.py losing one retried chunk). Event by event, the
        server answers such an id with a conflict, an error, so the caller retries again once
        the proposal is either stored or forgotten, and nothing is lost.
        """
        from core.store.bulk import FastBatchAppender, PipelinedAppender  # bulk appends only: not every client

        tally: Counter[str] = Counter()
        if self.metrics is not None:
            events = self._tallied(events, tally)
        fast = self.fast_batches and not pipelined
        if fast and self._unsettled:
            events = list(events)
            self._forget_settled()
            fast = not any(event.event_id in self._unsettled for event in events)
        sent: list[str] = []
        try:
            if fast:
                report = await FastBatchAppender(self.nc, self.streams, timeout=self.timeout).append(
                    self._noting_ids(events, sent)
                )
            else:
                report = await PipelinedAppender(self.nc, self.streams, timeout=self.timeout).append(events)
        except BaseException as exc:
            if fast:
                now = time.monotonic()
                self._unsettled.update(dict.fromkeys(sent, now))
            if isinstance(exc, AppendFailed) and self.metrics is not None:
                for stream, count in tally.items():
                    self.metrics.append_failed.labels(stream=stream, reason=type(exc).__name__).inc(count)
            raise
        if not fast and self._unsettled:
            for event in events:  # a list here: unsettled ids made it one
                self._unsettled.pop(event.event_id, None)
        if self.metrics is not None:
            for stream, count in tally.items():
                self.metrics.appended.labels(stream=stream).inc(count)
        return report

    @staticmethod
    def _noting_ids(events: Iterable[Event], sent: list[str]) -> Iterator[Event]:
        for event in events:
            sent.append(event.event_id)
            yield event

    def _forget_settled(self) -> None:
        """Drop the ids older than every stream's duplicate window: the server has forgotten them too."""
        horizon = time.monotonic() - max(spec.duplicate_window_s for spec in self.streams)
        self._unsettled = {event_id: at for event_id, at in self._unsettled.items() if at >= horizon}

    def _tallied(self, events: Iterable[Event], tally: Counter[str]) -> Iterator[Event]:
        """The events, counted per stream as the bulk path takes them (it may take a generator)."""
        for event in events:
            tally[stream_for(event.subject(), self.streams).name] += 1
            yield event

    # --- read ----------------------------------------------------------------

    async def replay(
        self, subject_filter: str, from_seq: int = 1, *, batch: int = 1000
    ) -> AsyncGenerator[list[RawMessage], None]:
        """Lists of raw, undecoded messages on `subject_filter` from `from_seq`, for bulk work (core.store.replay)."""
        spec = stream_for_filter(subject_filter, self.streams)
        raws = replay(self.nc, self.js, spec.name, subject_filter, from_seq, batch=batch)
        async with contextlib.aclosing(raws) as lists:
            async for raw in lists:
                yield raw

    async def read_after(self, subject_filter: str, from_seq: int, *, batch: int) -> tuple[list[RawMessage], int]:
        """Up to `batch` raw messages on `subject_filter` from `from_seq`, and how many more match (core.store.direct).

        No consumer: what a live read model asks for many times a second.
        """
        spec = stream_for_filter(subject_filter, self.streams)
        return await read_after(
            self.nc, self.js, spec.name, subject_filter, from_seq, batch=batch, timeout=self.timeout
        )

    async def read(
        self, subject_filter: str, from_seq: int = 1, *, batch: int = 512
    ) -> AsyncGenerator[StoredEvent, None]:
        """Yield the stored events on `subject_filter` from stream sequence `from_seq`, in order.

        Stops at the last message that existed when the read began. A message that does not
        decode is yielded with `event=None` and the reason in `error`: never skipped.
        """
        spec = stream_for_filter(subject_filter, self.streams)
        config = reader_config(subject_filter, from_seq)
        try:
            sub = await self.js.pull_subscribe(subject_filter, stream=spec.name, config=config)
        except (TimeoutError, nats.errors.Error) as exc:
            raise from_exception(exc, doing=f"read {subject_filter}") from exc
        try:
            try:
                info = await sub.consumer_info()
            except (TimeoutError, nats.errors.Error) as exc:  # a server going away as it is asked
                raise from_exception(exc, doing=f"read {subject_filter}") from exc
            remaining = info.num_pending or 0
            while remaining > 0:
                try:
                    msgs = await sub.fetch(min(batch, remaining), timeout=self.timeout)
                except (TimeoutError, nats.errors.Error) as exc:
                    raise from_exception(exc, doing=f"read {subject_filter}") from exc
                for msg in msgs:
                    meta = msg.metadata
                    yield StoredEvent.of(spec.name, meta.sequence.stream, msg.subject, msg.data)
                    remaining = meta.num_pending
        finally:
            await _drop_consumer(self, spec.name, sub)


async def _drop_consumer(store: EventStore, stream: str, sub: object) -> None:
    # The ephemeral consumer would expire on its own; deleting it now keeps the server tidy.
    try:
        info = await sub.consumer_info()  # type: ignore[attr-defined]
        await sub.unsubscribe()  # type: ignore[attr-defined]
        await store.js.delete_consumer(stream, info.name)
    except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
        pass
