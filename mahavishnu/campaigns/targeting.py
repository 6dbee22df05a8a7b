"""Which devices a campaign reaches, read from the running mesh's devices read model (mesh.q.devices.list).

An explicit list is taken as it is; a filter is asked page by page (the read model
narrows by one tag, the site, the transport and presence; `targets.matches` checks every
field of the filter on each row, so several tags work too, and leaves out devices the
command path cannot reach). The rows also give each device's tags, which waves by tags need.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client

from core.campaigns.spec import CampaignSpec, Targets
from mahavishnu.campaigns import targets as matching
from mahavishnu.control.requests import query

PAGE = 1000  # the read model's largest page (projections.device_queries.PAGE_MAX)


async def rows(nc: Client, targets: Targets | None = None) -> list[dict[str, Any]]:
    """The device rows of the read model (narrowed by `targets`' first tag, site, transport, presence).

    RequestError (mahavishnu.control.requests) when the query service does not answer.
    """
    request: dict[str, Any] = {"limit": PAGE}
    if targets is not None:
        if targets.tags:
            key, value = next(iter(sorted(targets.tags.items())))
            request["tag"] = f"{key}={value}"
        for field in ("site", "transport", "presence"):
            if getattr(targets, field) is not None:
                request[field] = getattr(targets, field)
    found: list[dict[str, Any]] = []
    while True:
        page = await query(nc, "devices.list", request)
        found.extend(page["devices"])
        if not page.get("next"):
            return found
        request["after"] = page["next"]


def needs_tags(spec: CampaignSpec) -> bool:
    """Whether the targets' waves are chosen by tags (an explicit list then needs its devices' tags)."""
    return any(wave.tags for wave in spec.waves)


async def resolve(nc: Client, spec: CampaignSpec) -> dict[str, int]:
    """The campaign's targets now, each with its wave (targets.waves_of), in a stable order."""
    explicit = spec.targets.devices
    tags: Mapping[str, Mapping[str, str]] = {}
    if explicit:
        devices = list(dict.fromkeys(explicit))
        if needs_tags(spec):
            tags = {row["device_id"]: row.get("tags") or {} for row in await rows(nc)}
    else:
        found = [row for row in await rows(nc, spec.targets) if matching.matches(spec.targets, row)]
        devices = [row["device_id"] for row in found]
        tags = {row["device_id"]: row.get("tags") or {} for row in found}
    return matching.waves_of(devices, spec, tags)
