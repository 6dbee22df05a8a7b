"""The telemetry read model: a bounded history per device, on the mesh's own runner; its query."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.events import DeviceHeartbeat, TelemetryReported
from core.store import EventStore
from projections.catalog import CATALOG
from projections.reading import QueryError, ReadModels
from projections.runner import ProjectionRunner
from projections.telemetry import HISTORY, Telemetry
from projections.telemetry_queries import TelemetryHistory, telemetry_history

KEY = secrets.token_hex(32)


def test_it_is_in_the_catalog_and_reads_only_telemetry() -> None:
    assert CATALOG["telemetry"] is Telemetry
    assert Telemetry().apply(DeviceHeartbeat(device_id="d", uptime_s=1.0), 1) == []


def test_a_report_is_one_row_and_a_device_is_trimmed_once_in_trim_every_reports_of_its_own() -> None:
    model = Telemetry(history=10, trim_every=4)
    (sql, params), *_ = model.apply(TelemetryReported(device_id="a", metrics={"t": 1.0, "h": 2.0}), 1)
    assert sql.startswith("INSERT") and params[0:2] == ("a", 1) and params[3] == '{"h":2.0,"t":1.0}'
    assert model.apply(TelemetryReported(device_id="a", metrics={}), 2) == []  # nothing to chart
    trims = []
    for seq in range(3, 15):
        for device in ("a", "b"):
            statements = model.apply(TelemetryReported(device_id=device, metrics={"t": 1.0, "h": 2.0}), seq)
            assert [s.split()[0] for s, _ in statements] in (["INSERT"], ["INSERT", "DELETE"])
            trims += [(seq, params[0]) for sql, params in statements if sql.startswith("DELETE")]
    # a's first report was at 1: its 4th, 8th and 12th; b's first was at 3
    assert [seq for seq, device in trims if device == "a"] == [5, 9, 13]
    assert [seq for seq, device in trims if device == "b"] == [6, 10, 14]
    assert Telemetry(history=HISTORY).trim_every == HISTORY // 10
    assert Telemetry(history=5).trim_every == 1  # a short history is kept exactly


async def run(store: EventStore, folder: Path, projection: Telemetry) -> None:
    runner = ProjectionRunner(projection, store, directory=folder, key=KEY)
    await runner.open()
    await runner.catch_up()
    await runner.close()


async def test_it_keeps_the_newest_points_of_each_metric_and_answers_them_oldest_first(
    store: EventStore, tmp_path: Path
) -> None:
    device, quiet = f"dev-{uuid.uuid4().hex[:8]}", f"dev-{uuid.uuid4().hex[:8]}"
    start = datetime(2026, 12, 1, tzinfo=UTC)
    reports = [
        TelemetryReported(
            device_id=device, metrics={"temp_c": float(n), "rpm": 100.0 + n}, occurred_at=start + timedelta(seconds=n)
        )
        for n in range(12)
    ]
    await store.append_many([*reports, TelemetryReported(device_id=quiet, metrics={"temp_c": 1.0})])
    await run(store, tmp_path, Telemetry(history=5))  # the live path, five points kept
    models = ReadModels(tmp_path, KEY)

    answer = await telemetry_history(models, TelemetryHistory(id=device))
    assert sorted(answer["metrics"]) == ["rpm", "temp_c"]
    assert [p["value"] for p in answer["metrics"]["temp_c"]] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert answer["metrics"]["temp_c"][0]["at"] == (start + timedelta(seconds=7)).isoformat()
    assert [p["value"] for p in answer["metrics"]["rpm"]] == [107.0, 108.0, 109.0, 110.0, 111.0]

    narrowed = await telemetry_history(models, TelemetryHistory(id=device, metric="rpm", limit=2))
    assert narrowed["metrics"] == {
        "rpm": [
            {"at": reports[10].occurred_at.isoformat(), "value": 110.0},
            {"at": reports[11].occurred_at.isoformat(), "value": 111.0},
        ]
    }
    assert (await telemetry_history(models, TelemetryHistory(id="dev-none")))["metrics"] == {}

    # A rebuild (`projections rebuild`: the bulk loader in a child process) ends with the same rows.
    runner = ProjectionRunner(Telemetry(history=5), store, directory=tmp_path, key=KEY)
    await runner.open()
    assert await runner.rebuild() >= len(reports)
    await runner.close()
    assert await telemetry_history(models, TelemetryHistory(id=device)) == answer

    # A report delivered late (an agent's outbox after a cut) is kept as stored, drawn where its time is.
    await store.append(TelemetryReported(device_id=device, metrics={"rpm": 1.0}, occurred_at=start))
    late = tmp_path / "late"
    await run(store, late, Telemetry(history=3))
    points = (await telemetry_history(ReadModels(late, KEY), TelemetryHistory(id=device, metric="rpm")))["metrics"]
    assert [p["value"] for p in points["rpm"]] == [1.0, 110.0, 111.0]


async def test_the_default_bound_and_a_model_not_built_yet(tmp_path: Path) -> None:
    assert Telemetry().history == HISTORY
    with pytest.raises(QueryError) as refused:
        await telemetry_history(ReadModels(tmp_path, KEY), TelemetryHistory(id="d"))
    assert refused.value.status == 503 and "telemetry read model is not built yet" in str(refused.value)
