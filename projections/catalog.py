"""Every read model the mesh keeps, by name."""

from __future__ import annotations

from core.metrics import CampaignMetrics
from core.sealing import KeyStore
from projections.audit import Audit
from projections.campaigns import Campaigns
from projections.codeindex.readmodel import CodeIndex
from projections.commands import Commands
from projections.devices import Devices
from projections.projection import Projection
from projections.telemetry import Telemetry
from projections.updates.readmodel import Updates

CATALOG: dict[str, type[Projection]] = {
    "devices": Devices,
    "commands": Commands,
    "audit": Audit,
    "code": CodeIndex,
    "telemetry": Telemetry,
    "campaigns": Campaigns,
    "updates": Updates,
}


def build(name: str, keys: KeyStore | None, *, campaign_metrics: CampaignMetrics | None = None) -> Projection:
    """The read model `name`, ready to apply events: the devices model gets the data keys to open sealed fields,
    the campaigns model the metrics it sets as it applies (the running mesh's only).

    Whatever applies events (the running mesh, a rebuild, a restore) builds its projections
    here, so none of them forgets the keys and stores a NULL where the others store a value.
    """
    if name == "devices":
        return Devices(keys)
    if name == "campaigns":
        return Campaigns(campaign_metrics)
    return CATALOG[name]()
