"""Which devices a campaign targets, and in which wave each one goes (pure).

`matches` reads a row of the devices read model as mesh.q.devices.list answers it
({"device_id", "status", "presence", "transport", "site", "tags", ...}), so the filter that
`campaign create` checks with the query, and the one the orchestrator applies to devices
that show up later, are the same rule. Only devices the command path can reach are
targets: enrolled agents, and registered MQTT devices and SSH hosts; a revoked device, or
one only seen (status unknown), is not.

`waves_of` splits the targets into the spec's waves, in order. A wave with tags takes the
remaining targets that carry them; a wave with a percentage takes that share of all the
targets (rounded up, so a 5% canary of 10 devices is one device, not none) from those that
remain; a wave with neither takes all that remain, and so does the last wave. Which
devices make a percentage is decided by a hash of their ids: the same on every run (a
restarted orchestrator splits them as before), and spread over the fleet rather than the
first ids in order (pump-001..pump-050 may all sit in one rack).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

from core.campaigns.spec import CampaignSpec, Targets

REACHABLE = frozenset({"enrolled", "registered"})  # the devices read model's statuses a command can reach


def matches(targets: Targets, device: Mapping[str, Any]) -> bool:
    """Whether the devices read model's row `device` is one of `targets`."""
    if device.get("status") not in REACHABLE:
        return False
    if targets.devices and device.get("device_id") not in targets.devices:
        return False
    tags = device.get("tags") or {}
    if any(tags.get(key) != value for key, value in targets.tags.items()):
        return False
    return all(
        wanted is None or device.get(field) == wanted
        for field, wanted in (("site", targets.site), ("transport", targets.transport), ("presence", targets.presence))
    )


def _spread(device: str) -> str:
    return hashlib.sha256(device.encode()).hexdigest()


def waves_of(devices: Sequence[str], spec: CampaignSpec, tags: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
    """Each of `devices` (the targets) and its wave (0 without waves); `tags`: each device's tags."""
    if not spec.waves:
        return dict.fromkeys(devices, 0)
    remaining = sorted(set(devices), key=_spread)
    total = len(remaining)
    last = len(spec.waves) - 1
    waves: dict[str, int] = {}
    for index, wave in enumerate(spec.waves):
        if index == last:
            taken = remaining
        elif wave.tags:
            taken = [
                device
                for device in remaining
                if all(tags.get(device, {}).get(key) == value for key, value in wave.tags.items())
            ]
        elif wave.percent is not None:
            # Rounded to 9 places first: 33.3% of 1000 must be 333, not 334 by a float's last bit.
            taken = remaining[: math.ceil(round(wave.percent * total / 100, 9))]
        else:
            taken = remaining
        waves.update(dict.fromkeys(taken, index))
        chosen = set(taken)
        remaining = [device for device in remaining if device not in chosen]
    return waves
