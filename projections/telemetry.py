"""The `telemetry` read model: the recent history of each device's metrics, bounded per device and metric.

The devices read model keeps only the last value of a metric; a chart needs the values
over time. This one keeps the last HISTORY points of each (device, metric), in the order
the stream stored them: each report inserts its points, and every so often (one report in
`trim_every` of each device and metric) drops what fell off the end, so a device that
reports every second for a year holds as many rows as one that reported HISTORY times, and
at most 2 * trim_every more. A trim walks HISTORY entries of the index: made for every
point, it cost more than everything else the read models do, and under 5,000 events a
second (bench/lag.py) every model fell behind by seconds more each minute. The query reads
the newest points only, so the few extra rows never show. The primary key (device, metric,
seq) is the index both the trimming and the query walk (a bulk load has it from the start:
it is not a separate CREATE INDEX).
"""

from __future__ import annotations

from core.events import Event, TelemetryReported
from projections.projection import Statement

HISTORY = 500  # points kept per device and metric: a chart's width of points, a few hours at 30 s

_INSERT = "INSERT INTO telemetry_points (device_id, metric, seq, at, value) VALUES (?, ?, ?, ?, ?)"
# The oldest point kept is the HISTORY-th newest; anything older goes.
_TRIM = (
    "DELETE FROM telemetry_points WHERE device_id = ?1 AND metric = ?2 AND seq < ("
    " SELECT seq FROM telemetry_points WHERE device_id = ?1 AND metric = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)"
)


class Telemetry:
    name: str = "telemetry"
    version: int = 1
    sources: tuple[str, ...] = ("mesh.evt.device.*.telemetry",)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS telemetry_points ("
        " device_id TEXT NOT NULL, metric TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL, value REAL NOT NULL,"
        " PRIMARY KEY (device_id, metric, seq)) WITHOUT ROWID",
    )

    def __init__(self, history: int = HISTORY, trim_every: int | None = None) -> None:
        self.history = history
        self.trim_every = trim_every or max(1, history // 10)
        # Points of each (device, metric) applied since its last trim, in this process: after a
        # restart they count from 0 again, which only makes the next trim come later.
        self._since_trim: dict[tuple[str, str], int] = {}

    def apply(self, event: Event, seq: int) -> list[Statement]:
        if not isinstance(event, TelemetryReported):
            return []
        at = event.occurred_at.isoformat()
        metrics = sorted(event.metrics.items())
        # The inserts first, then the trims: two runs of one statement each (projections.applying groups them).
        return [(_INSERT, (event.device_id, metric, seq, at, value)) for metric, value in metrics] + [
            (_TRIM, (event.device_id, metric, self.history - 1))
            for metric, _ in metrics
            if self._trim_due(event.device_id, metric)
        ]

    def _trim_due(self, device: str, metric: str) -> bool:
        key = (device, metric)
        since = self._since_trim.get(key, 0) + 1
        if since >= self.trim_every:
            self._since_trim.pop(key, None)
            return True
        self._since_trim[key] = since
        return False
