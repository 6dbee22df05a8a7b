"""`devices.summary`: how many devices are online, offline, never seen and revoked, in all, by site and by transport.

A dashboard's first line, answered from the devices read model with one grouped scan:
at 10,000 devices that is a few milliseconds, and the answer is a handful of rows
(sites x transports x states), folded into the document by a pure function.

The four states are disjoint: a revoked device is `revoked` whatever it last said; of
the others, one never heard from (no heartbeat, telemetry or report: an SSH host, a device
not yet started) is `never_seen`, and the rest are `online` or `offline` by the same window
as the list's presence (projections.device_queries.presence_cutoff).
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.events.base import utc_now
from projections.device_queries import presence_cutoff
from projections.reading import ReadModels, read_rows

STATES = ("online", "offline", "never_seen", "revoked")
NO_SITE = ""  # the hub's own devices: no site

SUMMARY_SQL = (
    "SELECT coalesce(site, '') AS site, coalesce(transport, '') AS transport,"
    " CASE WHEN status = 'revoked' THEN 'revoked' WHEN last_seen IS NULL THEN 'never_seen'"
    " WHEN last_seen >= :cutoff THEN 'online' ELSE 'offline' END AS state,"
    " count(*) AS devices FROM devices GROUP BY 1, 2, 3"
)


class FleetSummary(msgspec.Struct, forbid_unknown_fields=True):
    pass


def _counts() -> dict[str, int]:
    return {"devices": 0, **dict.fromkeys(STATES, 0)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The document from the grouped rows (pure): totals, and the same counts per site and per transport, by name."""
    total = _counts()
    by_site: dict[str, dict[str, int]] = {}
    by_transport: dict[str, dict[str, int]] = {}
    for row in rows:
        for counts in (
            total,
            by_site.setdefault(row["site"], _counts()),
            by_transport.setdefault(row["transport"], _counts()),
        ):
            counts[row["state"]] += row["devices"]
            counts["devices"] += row["devices"]
    return {
        "total": total,
        "by_site": [{"site": site, **counts} for site, counts in sorted(by_site.items())],
        "by_transport": [{"transport": transport, **counts} for transport, counts in sorted(by_transport.items())],
    }


async def devices_summary(models: ReadModels, _: FleetSummary) -> dict[str, Any]:
    """{"total": {devices, online, offline, never_seen, revoked}, "by_site": [...], "by_transport": [...]}."""
    rows = await read_rows(models, "devices", SUMMARY_SQL, cutoff=presence_cutoff(utc_now()))
    return summarize(rows)


SUMMARY_QUERIES: dict[str, tuple[type[Any], Any]] = {"devices.summary": (FleetSummary, devices_summary)}
