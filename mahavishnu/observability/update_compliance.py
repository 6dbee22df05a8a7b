"""How far the fleet is with each artifact: the mahavishnu_update_devices gauge, sampled from the read models.

Every SAMPLE_S seconds it asks the same query the dashboard's compliance panel asks
(projections.updates.queries.updates_compliance), so the metric and the panel never
disagree. A sample that fails (a read model not built yet) is logged and the last values kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.metrics import UpdateMetrics
from projections.reading import QueryError, ReadModels
from projections.updates.queries import ComplianceRequest, updates_compliance

log = logging.getLogger("mahavishnu.update_compliance")

SAMPLE_S = 30.0


async def follow(models: ReadModels, metrics: UpdateMetrics, stop: asyncio.Event, *, every: float = SAMPLE_S) -> None:
    """Keep the gauge current until `stop` is set."""
    while not stop.is_set():
        try:
            found = await updates_compliance(models, ComplianceRequest())
            metrics.show((artifact["name"], artifact["devices"]) for artifact in found["artifacts"])
        except QueryError as exc:
            log.info("update compliance not sampled", extra={"reason": str(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
