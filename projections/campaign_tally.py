"""A campaign's counts kept up to date one event at a time: what CampaignView.counts() and wave_counts() say, in O(1).

CampaignView's own counts walk every target and execution: right for a view asked now and
then, too slow for a read model that stores the counts after each of a 10,000-device
campaign's 30,000 events. The fold stays the one in core.campaigns.state; this module does
not interpret events. It only looks at the devices an event touches, before and after the
fold applied it, and moves their share of the counts from what they were to what they are
(pure; tests/projections/test_campaign_tally.py holds it equal to the view's own counts).
"""

from __future__ import annotations

from collections import Counter

from core.campaigns.state import CampaignView
from core.campaigns.states import ExecutionState
from core.events.base import Event
from core.events.campaign import CampaignTargeted, ExecutionChanged, ExecutionNotified

PENDING = "pending"
TARGETS = "targets"
WHOLE = -1  # the key of the whole campaign's counts, beside the waves' 0, 1, ...

Share = Counter[tuple[int, str]]  # (wave, or WHOLE; pending | targets | an execution state) -> 1


def touched(event: Event) -> tuple[str, ...]:
    """The devices whose share of the counts `event` may change (pure)."""
    match event:
        case CampaignTargeted(devices=devices):
            return tuple(dict.fromkeys(devices))  # a device named twice moves once
        case ExecutionNotified(device_id=device) | ExecutionChanged(device_id=device):
            return (device,)
    return ()


def _waves(view: CampaignView) -> int:
    return max(len(view.spec.waves), 1)  # as CampaignView.wave_counts() counts them


def share(view: CampaignView, device: str) -> Share:
    """What one device adds to the counts (pure): pending or its execution's state, and the same per wave."""
    found: Share = Counter()
    waves = _waves(view)
    wave = view.targets.get(device)
    execution = view.executions.get(device)
    if wave is not None:
        if execution is None:
            found[(WHOLE, PENDING)] += 1
        if 0 <= wave < waves:
            found[(wave, TARGETS)] += 1
    if execution is not None:
        found[(WHOLE, execution.state.value)] += 1
        if 0 <= execution.wave < waves:
            found[(execution.wave, execution.state.value)] += 1
    return found


class Tally:
    """The counts of one campaign: `before(view, event)`, then the fold applies the event, then `after(view)`."""

    def __init__(self) -> None:
        self.counted: Counter[tuple[int, str]] = Counter()
        self._before: list[tuple[str, Share]] = []

    @classmethod
    def of(cls, view: CampaignView) -> Tally:
        """Counted from scratch: for a view recalled from its history."""
        tally = cls()
        for device in view.targets.keys() | view.executions.keys():
            tally.counted.update(share(view, device))
        return tally

    def before(self, view: CampaignView, event: Event) -> None:
        self._before = [(device, share(view, device)) for device in touched(event)]

    def after(self, view: CampaignView) -> None:
        for device, was in self._before:
            self.counted.update(share(view, device))
            self.counted.subtract(was)
        self._before = []

    def counts(self) -> dict[str, int]:
        """As CampaignView.counts(): pending, then every execution state."""
        return {
            PENDING: self.counted[(WHOLE, PENDING)],
            **{state.value: self.counted[(WHOLE, state.value)] for state in ExecutionState},
        }

    def wave_counts(self, view: CampaignView) -> list[dict[str, object]]:
        """As CampaignView.wave_counts(): per wave its name, whether it is open, its targets and states."""
        return [
            {
                "wave": index,
                "name": view.spec.waves[index].name if index < len(view.spec.waves) else "",
                "open": index < view.waves_open,
                TARGETS: self.counted[(index, TARGETS)],
                **{state.value: self.counted[(index, state.value)] for state in ExecutionState},
            }
            for index in range(_waves(view))
        ]
