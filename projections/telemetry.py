"""The `telemetry` read model: the recent history of each device's metrics, bounded per device.

The devices read model keeps only the last value of a metric; a chart needs the values
over time. This one keeps each device's last HISTORY reports, in the order the stream
stored them, one row a report with its metrics as a JSON object: so each metric has at
most HISTORY points, and a device that reports every second for a year holds as many rows
as one that reported HISTORY times (and at most trim_every more: every so often, one
report in `trim_every` of each device, what fell off the end is dropped).

Why a row a report, not a row a metric: a batch of a fleet's reports inserts into every
device's history at once, and every page it touches is encrypted and authenticated again
at the commit. With a row per metric (six metrics, 200 devices: 1,200 histories) a batch
touched six times the pages of a row per report, and under 5,000 events a second
(bench/lag.py) the model's writer spent 131 µs of CPU a report, the most of any read
model; a row per report costs a sixth of that (188 -> 33 µs in a bench of the two layouts
on the same batches). A query expands the JSON of the device's rows instead (json_each):
for 500 reports of six metrics, 6.5 ms against 4.8. The primary key (device, seq) is the
index both the trimming and the query walk.
"""

from __future__ import annotations

import msgspec

from core.events import Event, TelemetryReported
from projections.projection import Statement

HISTORY = 500  # reports kept per device: a chart's width of points, a few hours at 30 s

_INSERT = "INSERT INTO telemetry_reports (device_id, seq, at, metrics) VALUES (?, ?, ?, ?)"
# The oldest report kept is the HISTORY-th newest; anything older goes.
_TRIM = (
    "DELETE FROM telemetry_reports WHERE device_id = ?1 AND seq < ("
    " SELECT seq FROM telemetry_reports WHERE device_id = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)"
)
_ENCODE = msgspec.json.Encoder(order="sorted").encode


class Telemetry:
    name: str = "telemetry"
    version: int = 2  # 1 kept a row per metric
    sources: tuple[str, ...] = ("mesh.evt.device.*.telemetry",)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS telemetry_reports ("
        " device_id TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL, metrics TEXT NOT NULL,"
        " PRIMARY KEY (device_id, seq)) WITHOUT ROWID",
    )

    def __init__(self, history: int = HISTORY, trim_every: int | None = None) -> None:
        self.history = history
        self.trim_every = trim_every or max(1, history // 10)
        # Reports of each device applied since its last trim, in this process: after a
        # restart they count from 0 again, which only makes the next trim come later.
        self._since_trim: dict[str, int] = {}

    def apply(self, event: Event, seq: int) -> list[Statement]:
        if not isinstance(event, TelemetryReported) or not event.metrics:
            return []
        device = event.device_id
        insert: Statement = (_INSERT, (device, seq, event.occurred_at.isoformat(), _ENCODE(event.metrics).decode()))
        # The insert first, then the trim: two runs of one statement each (projections.applying groups them).
        return [insert, (_TRIM, (device, self.history - 1))] if self._trim_due(device) else [insert]

    def _trim_due(self, device: str) -> bool:
        since = self._since_trim.get(device, 0) + 1
        if since >= self.trim_every:
            self._since_trim.pop(device, None)
            return True
        self._since_trim[device] = since
        return False
