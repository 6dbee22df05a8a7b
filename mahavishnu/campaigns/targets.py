"""Stand-in for helper/policies' targets.py, replaced when that branch is merged."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from core.campaigns.spec import CampaignSpec, Targets


def waves_of(devices: Sequence[str], spec: CampaignSpec, tags: Mapping[str, Mapping[str, str]]) -> dict[str, int]:
    if not spec.waves:
        return dict.fromkeys(devices, 0)
    found: dict[str, int] = {}
    start = 0
    for index, wave in enumerate(spec.waves):
        if wave.percent is None:
            continue
        share = start + math.ceil(len(devices) * wave.percent / 100)
        end = len(devices) if index == len(spec.waves) - 1 else min(len(devices), share)
        for device in devices[start:end]:
            found[device] = index
        start = end
    for device in devices[start:]:
        found[device] = len(spec.waves) - 1
    return found


def matches(targets: Targets, device: Mapping[str, Any]) -> bool:
    tags = device.get("tags") or {}
    return all(tags.get(k) == v for k, v in targets.tags.items()) and all(
        getattr(targets, f) is None or device.get(f) == getattr(targets, f) for f in ("site", "transport", "presence")
    )
