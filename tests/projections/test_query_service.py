"""The NATS door to the read models: discoverable as a micro service, JSON in and out, errors in headers."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from core.commands import NOT_TAKEN
from core.errors import StoreUnavailable
from core.events import CommandAccepted, CommandIssued, DeviceEnrolled, MeshStarted, TelemetryReported
from core.store import EventStore
from projections import readers
from projections.admission import Admission
from projections.authz import Caller
from projections.catalog import CATALOG
from projections.queries import QUERIES, ReadModels
from projections.query_service import SERVICE_NAME, QueryService, start_query_service
from projections.runner import ProjectionRunner
from tests.waiting import eventually

KEY = secrets.token_hex(32)


@pytest.fixture
async def models(store: EventStore, nc: Client, tmp_path: Path) -> AsyncIterator[str]:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await store.append(
        DeviceEnrolled(device_id=device, serial="ab", fingerprint_sha256="f", not_after=datetime.now(UTC))
    )
    await store.append(TelemetryReported(device_id=device, metrics={"temp_c": 40.5}))
    await store.append(CommandIssued(command_id=f"c-{device}", device_id=device, name="ping"))
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    service = await start_query_service(nc, ReadModels(tmp_path, KEY, store), version="0.1.0")
    yield device
    await service.stop()


async def ask(nc: Client, subject: str, body: Any = None) -> tuple[Any, dict[str, str]]:
    reply = await nc.request(subject, b"" if body is None else json.dumps(body).encode(), timeout=5)
    return (json.loads(reply.data) if reply.data else None), dict(reply.headers or {})


async def test_the_service_answers_the_discovery_protocol(models: str, nc: Client) -> None:
    ping, _ = await ask(nc, "$SRV.PING")
    assert ping["name"] == SERVICE_NAME
    info, _ = await ask(nc, f"$SRV.INFO.{SERVICE_NAME}")
    assert {e["subject"] for e in info["endpoints"]} >= {"mesh.q.devices.list", "mesh.q.commands.get"}


async def test_devices_and_commands_are_queried(models: str, nc: Client) -> None:
    listing, _ = await ask(nc, "mesh.q.devices.list")
    assert models in [d["device_id"] for d in listing["devices"]] and listing["next"] is None
    one, _ = await ask(nc, "mesh.q.devices.list", {"limit": 1, "after": models[:-1], "presence": "online"})
    assert [d["device_id"] for d in one["devices"]] == [models]  # its telemetry was just now
    device, _ = await ask(nc, "mesh.q.devices.get", {"id": models})
    assert device["status"] == "enrolled" and device["telemetry"]["temp_c"]["value"] == 40.5
    command, _ = await ask(nc, "mesh.q.commands.get", {"id": f"c-{models}"})
    assert (command["name"], command["state"]) == ("ping", "issued")
    commands, _ = await ask(nc, "mesh.q.commands.list", {"device": models})
    assert [c["command_id"] for c in commands["commands"]] == [f"c-{models}"]


async def test_the_fleet_summary_and_a_devices_telemetry_are_queried(models: str, nc: Client) -> None:
    summary, _ = await ask(nc, "mesh.q.devices.summary")
    assert summary["total"]["online"] >= 1 and {"site", "online"} <= set(summary["by_site"][0])
    history, _ = await ask(nc, "mesh.q.telemetry.history", {"id": models})
    assert [p["value"] for p in history["metrics"]["temp_c"]] == [40.5]
    _, headers = await ask(nc, "mesh.q.telemetry.history", {"id": models, "limit": 0})
    assert headers["Nats-Service-Error-Code"] == "400" and "limit" in headers["Nats-Service-Error"]


async def build(store: EventStore, folder: Path) -> None:
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=folder, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()


async def test_without_a_device_the_fleets_recent_commands_come_newest_first(
    store: EventStore, nc: Client, tmp_path: Path
) -> None:
    older, newer = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    await store.append(CommandIssued(command_id=older, device_id="dev-one", name="ping"))
    await store.append(CommandIssued(command_id=newer, device_id="dev-two", name="echo"))
    await build(store, tmp_path)
    service = await start_query_service(nc, ReadModels(tmp_path, KEY, store), version="0.1.0")
    try:
        recent, _ = await ask(nc, "mesh.q.commands.list", {"limit": 2})
        _, too_many = await ask(nc, "mesh.q.commands.list", {"limit": 1001})
    finally:
        await service.stop()
    assert [(c["command_id"], c["device_id"]) for c in recent["commands"]] == [(newer, "dev-two"), (older, "dev-one")]
    assert too_many["Nats-Service-Error-Code"] == "400" and "1..1000" in too_many["Nats-Service-Error"]


async def test_a_command_no_device_took_within_its_time_to_live_reads_expired_but_is_stored_issued(
    store: EventStore, nc: Client, tmp_path: Path
) -> None:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    late, taken = f"c-{uuid.uuid4().hex[:8]}", f"c-{uuid.uuid4().hex[:8]}"
    await store.append(CommandIssued(command_id=late, device_id=device, name="ping", ttl_s=5, occurred_at=long_ago))
    await store.append(CommandIssued(command_id=taken, device_id=device, name="ping", ttl_s=5, occurred_at=long_ago))
    await store.append(CommandAccepted(command_id=taken, device_id=device))  # taken in time: its outcome will come
    await build(store, tmp_path)
    service = await start_query_service(nc, ReadModels(tmp_path, KEY, store), version="0.1.0")
    try:
        got, _ = await ask(nc, "mesh.q.commands.get", {"id": late})
        listed, _ = await ask(nc, "mesh.q.commands.list", {"device": device})
    finally:
        await service.stop()
    assert (got["state"], got["detail"]) == ("expired", NOT_TAKEN)
    assert {c["command_id"]: c["state"] for c in listed["commands"]} == {late: "expired", taken: "accepted"}
    stored = await readers.rows(
        tmp_path / "commands.db", KEY, "SELECT state FROM commands WHERE command_id = ?", [late]
    )
    assert stored == [{"state": "issued"}]  # what the events say; the rule is applied when reading


async def test_the_status_shows_positions_lag_and_parked_events(store: EventStore, nc: Client, tmp_path: Path) -> None:
    device = f"dev-{uuid.uuid4().hex[:8]}"
    await nc.jetstream().publish(f"mesh.evt.device.{device}.telemetry", b"not an event")  # parked when applied
    await build(store, tmp_path)
    [behind] = await store.append(TelemetryReported(device_id=device, metrics={"temp_c": 1.0}))  # not applied
    await store.append(MeshStarted(node="n", version="0", url="tls://x"))  # same stream, not the devices' subjects
    service = await start_query_service(nc, ReadModels(tmp_path, KEY, store), version="0.1.0")
    try:
        status, headers = await ask(nc, "mesh.q.projections.status")
    finally:
        await service.stop()
    assert "Nats-Service-Error-Code" not in headers
    models = {m["name"]: m for m in status["read_models"]}
    assert set(models) == set(CATALOG)
    devices = models["devices"]
    assert devices["built"] and devices["positions"] == {"mesh.evt.device.>": behind.seq - 1}
    assert devices["lag_events"] == 1 and devices["lag_seconds"] >= 0  # the mesh event is not counted
    assert devices["parked"] >= 1
    assert models["audit"]["lag_events"] == 0  # nothing was appended to the audit trail since


async def test_the_status_says_when_a_read_model_is_not_built(store: EventStore, nc: Client, tmp_path: Path) -> None:
    service = await start_query_service(nc, ReadModels(tmp_path, KEY, store), version="0.1.0")
    try:
        status, _ = await ask(nc, "mesh.q.projections.status")
    finally:
        await service.stop()
    assert {(m["name"], m["built"], m["lag_events"]) for m in status["read_models"]} == {
        (name, False, None) for name in CATALOG
    }


@pytest.mark.parametrize(
    ("subject", "body", "code", "words"),
    [
        ("mesh.q.devices.get", {"id": "nobody"}, "404", "no device"),
        ("mesh.q.devices.get", {"identifier": "x"}, "400", "bad request"),
        ("mesh.q.commands.list", {"device": "d", "limit": 0}, "400", "limit"),
        ("mesh.q.commands.get", "not an object", "400", "bad request"),
        ("mesh.q.devices.list", {"limit": 0}, "400", "limit must be 1..1000"),
        ("mesh.q.devices.list", {"presence": "maybe"}, "400", "Invalid enum value 'maybe' - at `$.presence`"),
        ("mesh.q.devices.list", {"tag": "rack"}, "400", "tag 'rack' is not key=value"),
    ],
)
async def test_errors_come_back_in_the_micro_headers(
    models: str, nc: Client, subject: str, body: Any, code: str, words: str
) -> None:
    data, headers = await ask(nc, subject, body)
    assert data is None
    assert headers["Nats-Service-Error-Code"] == code
    assert words in headers["Nats-Service-Error"]


class HeldTrail:
    """An audit trail whose first `hold` records wait until released, to see what the service does meanwhile."""

    def __init__(self, hold: int = 1, error: Exception | None = None) -> None:
        self.hold = hold
        self.error = error
        self.records: list[dict[str, Any]] = []
        self.release = asyncio.Event()

    async def record(self, **entry: Any) -> None:
        self.records.append(entry)
        if len(self.records) <= self.hold:
            await self.release.wait()
        if self.error is not None:
            raise self.error


@pytest.fixture
async def built(store: EventStore, tmp_path: Path) -> ReadModels:
    for model in CATALOG.values():
        runner = ProjectionRunner(model(), store, directory=tmp_path, key=KEY)
        await runner.open()
        await runner.catch_up()
        await runner.close()
    return ReadModels(tmp_path, KEY, store)


async def test_the_answer_waits_for_its_audit_record_while_the_search_runs(
    built: ReadModels, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    searched: list[str] = []
    rows = readers.rows

    async def spied(path: Path, key: str, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        searched.append(sql)
        return await rows(path, key, sql, params)

    monkeypatch.setattr(readers, "rows", spied)
    trail = HeldTrail()
    service = await start_query_service(nc, built, version="0.1.0", audit=trail)  # type: ignore[arg-type]
    try:
        asking = asyncio.create_task(ask(nc, "mesh.q.devices.list"))
        await eventually(lambda: trail.records and searched, timeout=10, what="the audit record and the search")
        await nc.flush()  # an answer sent already would have arrived before the flush's PONG
        assert not asking.done()
        trail.release.set()
        listing, headers = await asking
    finally:
        await service.stop()
    assert "devices" in listing and "Nats-Service-Error-Code" not in headers


async def test_an_answer_whose_audit_record_failed_is_withheld(built: ReadModels, nc: Client) -> None:
    trail = HeldTrail(hold=0, error=StoreUnavailable("the connection to the NATS server is gone"))
    service = await start_query_service(nc, built, version="0.1.0", audit=trail)  # type: ignore[arg-type]
    try:
        data, headers = await ask(nc, "mesh.q.devices.list")
    finally:
        await service.stop()
    assert data is None
    assert headers["Nats-Service-Error-Code"] == "503"
    assert "could not be audited" in headers["Nats-Service-Error"]


async def test_a_slow_request_does_not_hold_up_the_next(built: ReadModels, nc: Client) -> None:
    trail = HeldTrail(hold=1)
    service = await start_query_service(nc, built, version="0.1.0", audit=trail)  # type: ignore[arg-type]
    try:
        first = asyncio.create_task(ask(nc, "mesh.q.devices.list"))
        await eventually(lambda: trail.records, timeout=10, what="the first request's audit record")
        second, _ = await ask(nc, "mesh.q.devices.list")  # answered while the first still waits
        assert "devices" in second and not first.done()
        trail.release.set()
        await first
    finally:
        await service.stop()


async def test_a_refused_query_is_audited_once_and_answered_in_the_micro_headers(built: ReadModels, nc: Client) -> None:
    trail = HeldTrail(hold=0)
    service = await start_query_service(nc, built, version="0.1.0", audit=trail)  # type: ignore[arg-type]
    try:
        reply = await nc.request(
            "mesh.q.devices.list", b"", timeout=5, headers={"Nats-Request-Info": json.dumps({"user": "stranger"})}
        )
    finally:
        await service.stop()
    assert reply.data == b""
    assert reply.headers == {
        "Nats-Service-Error-Code": "403",
        "Nats-Service-Error": "an unknown caller may not run devices.list",
    }
    assert [(r["actor"], r["outcome"]) for r in trail.records] == [("unknown", "denied")]


async def test_a_query_that_fails_unexpectedly_is_answered_500_without_details(
    built: ReadModels, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(models: ReadModels, request: Any) -> Any:
        raise RuntimeError("a secret detail")

    monkeypatch.setitem(QUERIES, "devices.list", (QUERIES["devices.list"][0], broken))
    trail = HeldTrail(hold=0)
    service = await start_query_service(nc, built, version="0.1.0", audit=trail)  # type: ignore[arg-type]
    try:
        data, headers = await ask(nc, "mesh.q.devices.list")
    finally:
        await service.stop()
    assert data is None
    assert headers["Nats-Service-Error-Code"] == "500"
    assert headers["Nats-Service-Error"] == "internal error in devices.list: RuntimeError"
    assert [r["outcome"] for r in trail.records] == ["ok"]  # audited once, before the answer


async def test_a_flood_from_one_caller_is_refused_429_and_audited_while_another_caller_gets_in(
    built: ReadModels, nc: Client
) -> None:
    """Two slots, three places in each caller's line: the flood's first two hold the slots (their audit
    records are held), three wait, the other five are refused at once; a second caller's query waits in
    its own line and gets the second freed slot, not the flood's last."""
    trail = HeldTrail(hold=2)
    callers = {name: Caller(name, "admin") for name in ("flood", "quiet")}
    service = await start_query_service(
        nc,
        built,
        version="0.1.0",
        audit=trail,  # type: ignore[arg-type]
        resolve=callers.get,
        admission=Admission(slots=2, per_caller=3, total=100),
    )

    async def ask_as(user: str) -> str:
        headers = {"Nats-Request-Info": json.dumps({"server": "s", "acc": "OPS", "id": 7, "user": user})}
        reply = await nc.request("mesh.q.devices.list", b"", timeout=10, headers=headers)
        return (reply.headers or {}).get("Nats-Service-Error-Code", "ok")

    try:
        flood = [asyncio.create_task(ask_as("flood")) for _ in range(10)]
        await eventually(
            lambda: sum(1 for r in trail.records if r["outcome"] == "refused") == 5, timeout=10, what="5 refusals"
        )
        quiet = asyncio.create_task(ask_as("quiet"))
        await eventually(lambda: service_waiting(service) == 4, timeout=10, what="the quiet caller waiting")
        trail.release.set()
        answers = await asyncio.gather(*flood)
        assert await quiet == "ok"
    finally:
        await service.stop()
    assert sorted(answers) == ["429"] * 5 + ["ok"] * 5
    refused = [r for r in trail.records if r["outcome"] == "refused"]
    assert [(r["actor"], r["details"]["status"]) for r in refused] == [("flood", 429)] * 5
    served = [r["actor"] for r in trail.records if r["outcome"] == "ok"]
    assert served[:2] == ["flood", "flood"] and served.index("quiet") <= 3  # one flood query, then quiet's turn


def service_waiting(service: QueryService) -> int:
    return service.admission.waiting
