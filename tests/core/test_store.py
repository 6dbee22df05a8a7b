"""The event store against a real nats-server with mTLS and encrypted JetStream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import msgspec
import pytest
from nats.aio.client import Client

from core.errors import AppendFailed, ConcurrencyConflict
from core.events import AuditRecorded, CommandIssued, DeviceRevoked, Event, TelemetryReported, encode
from core.metrics import EventStoreMetrics, new_registry
from core.store import EventStore, StoredEvent
from core.store.replay import ack_position
from tests.core.samples import one_of_each


def device() -> str:
    """A device id of its own per test: the streams are shared by the tests of a module."""
    return f"dev-{uuid.uuid4().hex[:12]}"


def telemetry(device_id: str, n: int) -> list[Event]:
    return [TelemetryReported(device_id=device_id, metrics={"n": float(i)}) for i in range(n)]


async def read_all(store: EventStore, subject: str, from_seq: int = 1) -> list[StoredEvent]:
    return [stored async for stored in store.read(subject, from_seq)]


async def test_every_event_type_round_trips_through_the_streams(store: EventStore) -> None:
    events = one_of_each(device())
    appended = [a for e in events for a in await store.append(e)]
    assert {a.stream for a in appended} == {"EVENTS", "COMMANDS", "AUDIT", "CAMPAIGNS"}  # every stream used
    for event, where in zip(events, appended, strict=True):
        [stored] = [s async for s in store.read(where.subject, where.seq) if s.seq == where.seq]
        assert stored.event == event
        assert stored.error is None


async def test_a_retried_append_is_stored_once(store: EventStore) -> None:
    event = telemetry(device(), 1)[0]
    [first] = await store.append(event)
    [again] = await store.append(event)
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    assert [s.event for s in await read_all(store, event.subject())] == [event]


async def test_expected_subject_sequence_detects_a_concurrent_writer(store: EventStore) -> None:
    dev = device()
    one, two, three = telemetry(dev, 3)
    [a] = await store.append(one, expected_last_subject_seq=0)
    assert await store.last_subject_sequence(one.subject()) == a.seq
    with pytest.raises(ConcurrencyConflict) as conflict:
        await store.append(two, expected_last_subject_seq=0)
    assert conflict.value.subject == one.subject()
    assert "reload" in str(conflict.value)
    [c] = await store.append(three, expected_last_subject_seq=a.seq)
    assert [s.event for s in await read_all(store, one.subject())] == [one, three]
    assert c.seq > a.seq


async def test_an_atomic_append_stores_all_or_nothing(store: EventStore) -> None:
    dev = device()
    batch = telemetry(dev, 5)
    stored = await store.append(batch, expected_last_subject_seq=0)
    assert [a.seq for a in stored] == list(range(stored[0].seq, stored[0].seq + 5))
    with pytest.raises(ConcurrencyConflict):
        await store.append(telemetry(dev, 5), expected_last_subject_seq=0)
    assert [s.event for s in await read_all(store, batch[0].subject())] == batch


async def test_a_retried_atomic_append_is_deduplicated_event_by_event(store: EventStore) -> None:
    batch = telemetry(device(), 4)
    first = await store.append(batch)
    again = await store.append(batch)
    assert all(a.duplicate for a in again)
    assert [a.seq for a in again] == [a.seq for a in first]
    assert len(await read_all(store, batch[0].subject())) == 4


async def test_an_atomic_append_cannot_span_streams(store: EventStore) -> None:
    dev = device()
    mixed = [e for e in one_of_each(dev) if isinstance(e, (TelemetryReported, CommandIssued))]
    with pytest.raises(AppendFailed, match="one stream"):
        await store.append(mixed)


async def test_a_chained_append_stores_each_event_right_after_the_one_before(store: EventStore) -> None:
    dev = device()
    last = await store.last_sequence("EVENTS")
    stored, refused = await store.append_chain(telemetry(dev, 3), after_seq=last)
    assert ([a.seq for a in stored], refused) == ([last + 1, last + 2, last + 3], None)
    stale, refused = await store.append_chain(telemetry(dev, 2), after_seq=last)  # someone (we) wrote meanwhile
    assert stale == [] and isinstance(refused, ConcurrencyConflict)
    assert len(await read_all(store, f"mesh.evt.device.{dev}.>")) == 3


async def test_a_chain_never_goes_on_after_a_stranger_took_its_place(store: EventStore) -> None:
    """Another writer's event lands where our first was expected: our second finds the sequence it
    expects, but not our first before it, and is refused too. What is stored is a prefix, never a gap."""
    dev = device()
    [tail] = await store.append(telemetry(dev, 1))
    await store.append(telemetry(dev, 1))  # the stranger, at tail.seq + 1
    ours = telemetry(dev, 2)
    stored, refused = await store.append_chain(ours, after_seq=tail.seq)
    assert stored == [] and isinstance(refused, ConcurrencyConflict)
    ids = {s.event.event_id for s in await read_all(store, f"mesh.evt.device.{dev}.>") if s.event}
    assert ids.isdisjoint(e.event_id for e in ours)


async def test_a_chain_stops_at_an_event_stored_before(store: EventStore) -> None:
    dev = device()
    [stored_before] = await store.append(telemetry(dev, 1))
    before = telemetry(dev, 1)[0]
    before = msgspec.structs.replace(before, event_id=stored_before.event_id)
    last = await store.last_sequence("EVENTS")
    fresh, later = telemetry(dev, 2)
    stored, refused = await store.append_chain([fresh, before, later], after_seq=last)
    assert [a.event_id for a in stored] == [fresh.event_id]
    assert isinstance(refused, ConcurrencyConflict)
    assert await store.last_sequence("EVENTS") == last + 1


async def test_order_is_kept_and_reads_resume_from_a_sequence(store: EventStore) -> None:
    events = telemetry(device(), 40)
    for event in events:
        await store.append(event)
    subject = events[0].subject()
    stored = await read_all(store, subject)
    assert [s.event for s in stored] == events
    assert [s.seq for s in stored] == sorted(s.seq for s in stored)
    tail = await read_all(store, subject, from_seq=stored[30].seq)
    assert [s.event for s in tail] == events[30:]


async def test_a_replay_hands_on_raw_lists_in_order_and_stops_where_it_began(store: EventStore) -> None:
    dev = device()
    await store.append_many(telemetry(dev, 25))
    first = (await read_all(store, f"mesh.evt.device.{dev}.>"))[0].seq
    lists = []
    async for raw in store.replay(f"mesh.evt.device.{dev}.>", first + 3, batch=10):
        lists.append(raw)
        if len(lists) == 1:  # appended after the replay began: not part of it
            await store.append_many(telemetry(dev, 5))
    assert [len(raw) for raw in lists] == [10, 10, 2]
    messages = [m for raw in lists for m in raw]
    assert [m.seq for m in messages] == sorted(m.seq for m in messages)
    assert messages[0].seq == first + 3
    assert {m.stream for m in messages} == {"EVENTS"}
    decoded = [StoredEvent.of(m.stream, m.seq, m.subject, m.data).event for m in messages]
    assert [e.metrics["n"] for e in decoded] == [float(i) for i in range(3, 25)]  # type: ignore[union-attr]


async def test_the_first_event_after_a_sequence_is_found_on_a_wildcard_filter(store: EventStore) -> None:
    dev, other = device(), device()
    await store.append_many([*telemetry(dev, 3), *telemetry(other, 2), *telemetry(dev, 1)])
    ours = await read_all(store, f"mesh.evt.device.{dev}.>")
    [found], more = await store.read_after(f"mesh.evt.device.{dev}.>", ours[2].seq + 1, batch=1)  # skips the other's
    assert (found.seq, more) == (ours[3].seq, 0)
    assert StoredEvent.of(*found).event == ours[3].event
    assert await store.read_after(f"mesh.evt.device.{dev}.>", ours[3].seq + 1, batch=1) == ([], 0)  # caught up
    assert await store.read_after(f"mesh.evt.device.{device()}.>", 1, batch=1) == ([], 0)


async def test_replaying_an_empty_subject_yields_nothing(store: EventStore) -> None:
    assert [raw async for raw in store.replay(f"mesh.evt.device.{device()}.>")] == []


def test_the_stream_sequence_and_pending_count_come_from_either_reply_layout() -> None:
    assert ack_position("$JS.ACK.AUDIT.c1.1.42.7.1700000000.3") == (42, 3)
    assert ack_position("$JS.ACK.hub.ACCT.AUDIT.c1.1.42.7.1700000000.3.tok") == (42, 3)
    with pytest.raises(ValueError, match="not a JetStream delivery"):
        ack_position("_INBOX.abc")


async def test_reading_an_empty_subject_yields_nothing(store: EventStore) -> None:
    assert await read_all(store, f"mesh.evt.device.{device()}.>") == []


async def test_a_malformed_message_is_read_back_with_its_reason(store: EventStore, nc: Client) -> None:
    dev = device()
    good = telemetry(dev, 1)[0]
    await store.append(good)
    js = nc.jetstream()
    await js.publish(f"mesh.evt.device.{dev}.telemetry", b'{"type": "device.telemetry.v1"}')
    await js.publish(f"mesh.evt.device.{dev}.junk", b"\xff not json")
    stored = await read_all(store, f"mesh.evt.device.{dev}.>")
    assert [s.event for s in stored[:1]] == [good]
    assert [s.event for s in stored[1:]] == [None, None]
    assert "device_id" in (stored[1].error or "")
    assert "not JSON" in (stored[2].error or "")


async def test_streams_are_created_once_and_updated_in_place(nc: Client) -> None:
    store = EventStore(nc)
    await store.ensure_streams()
    await store.ensure_streams()
    info = msgspec.json.decode((await nc.request("$JS.API.STREAM.INFO.AUDIT", b"{}")).data)
    assert info["config"]["deny_delete"] and info["config"]["deny_purge"]
    commands = msgspec.json.decode((await nc.request("$JS.API.STREAM.INFO.COMMANDS", b"{}")).data)
    assert commands["config"]["allow_msg_ttl"]
    assert store.atomic_batches


async def test_the_audit_stream_refuses_purge_and_delete(store: EventStore, nc: Client) -> None:
    [a] = await store.append(one_of_each(device())[-1])
    purge = msgspec.json.decode((await nc.request("$JS.API.STREAM.PURGE.AUDIT", b"{}")).data)
    assert "error" in purge
    delete = msgspec.json.decode(
        (await nc.request("$JS.API.STREAM.MSG.DELETE.AUDIT", msgspec.json.encode({"seq": a.seq}))).data
    )
    assert "error" in delete


@pytest.mark.slow
async def test_the_bulk_path_loses_and_duplicates_nothing_over_100k_events(store: EventStore) -> None:
    dev = device()
    events = telemetry(dev, 100_000)
    before = await store.last_sequence("EVENTS")
    report = await store.append_many(events)
    assert report.acknowledged == 100_000

    after = await store.last_sequence("EVENTS")
    assert after - before == 100_000

    again = await store.append_many(events)  # a full retry: everything deduplicated
    assert again.acknowledged == 100_000
    assert await store.last_sequence("EVENTS") == after  # nothing new was stored

    stored = await read_all(store, f"mesh.evt.device.{dev}.>")
    assert len(stored) == 100_000
    assert [s.event.event_id for s in stored if s.event] == [e.event_id for e in events]


async def test_the_pipelined_path_keeps_order_and_reports_duplicates(store: EventStore) -> None:
    from core.store.bulk import PipelinedAppender

    dev = device()
    events = telemetry(dev, 3_000)
    first = await PipelinedAppender(store.nc, store.streams, window=7, chunk=3).append(events)
    again = await store.append_many(events[:1000], pipelined=True)
    assert (first.acknowledged, first.duplicates) == (3_000, 0)
    assert (again.acknowledged, again.duplicates) == (1_000, 1_000)
    stored = await read_all(store, f"mesh.evt.device.{dev}.>")
    assert [s.event.event_id for s in stored if s.event] == [e.event_id for e in events]


async def test_a_fast_batch_retry_of_a_partly_stored_run_stores_only_the_rest(store: EventStore) -> None:
    from core.store.bulk import FastBatchAppender

    dev = device()
    events = telemetry(dev, 2_500)
    await store.append_many(events[:1_000])
    report = await FastBatchAppender(store.nc, store.streams, flow=7, window=50, chunk=13).append(events)
    assert report.acknowledged == 2_500
    stored = await read_all(store, f"mesh.evt.device.{dev}.>")
    assert [s.event.event_id for s in stored if s.event] == [e.event_id for e in events]


async def test_a_retry_of_a_failed_fast_batch_goes_event_by_event_and_reports_each_duplicate(store: EventStore) -> None:
    """A fast batch counts an id the server has seen as stored, even one of a proposal a dead node lost: retries
    of its events go where each acknowledgement says what happened (EventStore.append_many)."""
    dev = device()
    events = [*telemetry(dev, 500), AuditRecorded(category="test", action="boundary"), *telemetry(dev, 10)]

    def failing_after_the_first_run() -> Iterator[Event]:
        yield from events[:501]  # the audit event ends the first run, which is then sent
        raise RuntimeError("the caller's source failed")

    with pytest.raises(RuntimeError):
        await store.append_many(failing_after_the_first_run())
    retried = await store.append_many(events)
    assert (retried.acknowledged, retried.duplicates) == (511, 500)
    again = await store.append_many(events)  # settled: the fast path again, which does not tell duplicates
    assert (again.acknowledged, again.duplicates) == (511, None)
    stored = await read_all(store, f"mesh.evt.device.{dev}.>")
    telemetry_ids = [e.event_id for e in events if isinstance(e, TelemetryReported)]
    assert [s.event.event_id for s in stored if s.event] == telemetry_ids


async def test_a_bulk_append_across_streams_keeps_each_stream_in_order(store: EventStore) -> None:
    dev = device()
    kinds = (TelemetryReported, CommandIssued, AuditRecorded)  # one per stream
    mixed = [event for _ in range(50) for event in one_of_each(dev) if isinstance(event, kinds)]
    report = await store.append_many(mixed)
    assert report.acknowledged == 150
    for subject in (f"mesh.evt.device.{dev}.>", f"mesh.cmd.{dev}.>", "mesh.audit.identity.control"):
        stored = await read_all(store, subject)
        expected = [e for e in mixed if e.subject().startswith(subject.rstrip(">"))]
        assert [s.event for s in stored if s.event in expected] == expected


async def test_a_bulk_append_with_an_event_too_large_fails_before_sending(store: EventStore) -> None:
    dev = device()
    huge = TelemetryReported(device_id=dev, metrics={f"m{i}": float(i) for i in range(100_000)})
    with pytest.raises(AppendFailed, match="over the server's limit"):
        await store.append_many([*telemetry(dev, 3), huge])


async def test_appends_are_counted_per_stream_when_metrics_are_given(nc: Client) -> None:
    registry = new_registry(process_metrics=False)
    metered = EventStore(nc, metrics=EventStoreMetrics(registry))
    await metered.ensure_streams()
    dev = device()
    await metered.append(telemetry(dev, 1)[0])
    await metered.append_many([*telemetry(dev, 10), AuditRecorded(category="test", action="metered")])

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("mahavishnu_events_appended_total", stream="EVENTS") == 11
    assert sample("mahavishnu_events_appended_total", stream="AUDIT") == 1
    assert sample("mahavishnu_append_seconds_count", stream="EVENTS") == 1  # bulk appends are counted, not timed


async def test_read_after_gives_a_batch_of_one_filter_and_says_how_many_more(store: EventStore) -> None:
    dev, other = device(), device()
    for event in telemetry(dev, 5):
        await store.append(event)
        await store.append(telemetry(other, 1))  # interleaved: not on the filter
    first = (await read_all(store, f"mesh.evt.device.{dev}.>"))[0].seq
    got, more = await store.read_after(f"mesh.evt.device.{dev}.>", first, batch=3)
    assert ([m.seq > 0 for m in got], more) == ([True] * 3, 2)
    assert all(m.subject.startswith(f"mesh.evt.device.{dev}.") for m in got)
    assert [m.seq for m in got] == sorted(m.seq for m in got) and got[0].seq == first
    rest, more = await store.read_after(f"mesh.evt.device.{dev}.>", got[-1].seq + 1, batch=3)
    assert (len(rest), more) == (2, 0)
    assert await store.read_after(f"mesh.evt.device.{dev}.>", rest[-1].seq + 1, batch=3) == ([], 0)


def test_an_event_read_back_on_another_types_subject_is_kept_as_a_forgery() -> None:
    # a device may publish on its telemetry subject; a revocation it sends there must not count
    forged = DeviceRevoked(device_id="dev-a", serials=["1f"], reason="key_compromise")
    telemetry = TelemetryReported(device_id="dev-a", metrics={"t": 1.0})
    stored = StoredEvent.of("EVENTS", 7, telemetry.subject(), encode(forged))
    assert stored.event is None
    assert stored.error is not None and "DeviceRevoked belongs on mesh.evt.device.dev-a.revoked" in stored.error
    assert StoredEvent.of("EVENTS", 8, telemetry.subject(), encode(telemetry)).event == telemetry
