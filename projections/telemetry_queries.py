"""`telemetry.history`: a device's recent values of each metric, in time order, for a chart.

Read from the telemetry read model (projections.telemetry), which keeps each device's last
HISTORY reports, so the answer is bounded whatever the device sent.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from projections.reading import ReadModels, read_rows
from projections.telemetry import HISTORY


class TelemetryHistory(msgspec.Struct, forbid_unknown_fields=True):
    id: str  # the device
    metric: str | None = None  # None: every metric the device reported
    limit: Annotated[int, msgspec.Meta(ge=1, le=HISTORY, description="the newest points per metric")] = HISTORY


# The last `limit` points stored of each metric, in the order of their time: a chart draws left
# to right, and an agent's outbox may deliver an old report after newer ones.
_HISTORY_SQL = (
    "SELECT metric, at, value FROM ("
    " SELECT point.key AS metric, report.at AS at, point.value AS value, report.seq AS seq,"
    " row_number() OVER (PARTITION BY point.key ORDER BY report.seq DESC) AS newest"
    " FROM telemetry_reports AS report, json_each(report.metrics) AS point"
    " WHERE report.device_id = :device AND (:metric IS NULL OR point.key = :metric))"
    " WHERE newest <= :limit ORDER BY metric, at, seq"
)


def by_metric(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows as {metric: [{"at", "value"}, ...]}, their order kept (pure)."""
    metrics: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        metrics.setdefault(row["metric"], []).append({"at": row["at"], "value": row["value"]})
    return metrics


async def telemetry_history(models: ReadModels, request: TelemetryHistory) -> dict[str, Any]:
    """{"device_id", "metrics": {metric: [{"at", "value"}, ...]}}: empty when the device reported nothing yet."""
    rows = await read_rows(
        models, "telemetry", _HISTORY_SQL, device=request.id, metric=request.metric, limit=request.limit
    )
    return {"device_id": request.id, "metrics": by_metric(rows)}


TELEMETRY_QUERIES: dict[str, tuple[type[Any], Any]] = {"telemetry.history": (TelemetryHistory, telemetry_history)}
