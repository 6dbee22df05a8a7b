"""A campaign's counts, kept one event at a time by the fold, against counting every device afresh (pure)."""

from __future__ import annotations

from collections import Counter

import pytest

from core.campaigns.state import CampaignView, apply, fold
from core.campaigns.states import ExecutionState
from projections.campaigns import Campaigns
from projections.projection import Park
from tests.projections.campaign_life import aborted, executions, finished, shuffled_life, started


def counted_afresh(view: CampaignView) -> tuple[dict[str, int], list[dict[str, object]]]:
    """The counts by walking every target and execution: the reference the kept counts must equal."""
    waves = max(len(view.spec.waves), 1)
    states = Counter(execution.state.value for execution in view.executions.values())
    counts = {
        "pending": sum(1 for device in view.targets if device not in view.executions),
        **{state.value: states.get(state.value, 0) for state in ExecutionState},
    }
    targets = Counter(view.targets.values())
    per_wave: list[Counter[str]] = [Counter() for _ in range(waves)]
    for execution in view.executions.values():
        if 0 <= execution.wave < waves:
            per_wave[execution.wave][execution.state.value] += 1
    wave_counts: list[dict[str, object]] = [
        {
            "wave": index,
            "name": view.spec.waves[index].name if index < len(view.spec.waves) else "",
            "open": index < view.waves_open,
            "targets": targets.get(index, 0),
            **{state.value: per_wave[index].get(state.value, 0) for state in ExecutionState},
        }
        for index in range(waves)
    ]
    return counts, wave_counts


@pytest.mark.parametrize("seed", range(12))
def test_counted_one_event_at_a_time_they_are_what_counting_afresh_gives(seed: int) -> None:
    _, events = shuffled_life(seed)
    view: CampaignView | None = None
    for event in events:
        view = apply(view, event)
        assert view is not None
        assert view.counts() == counted_afresh(view)[0]
    assert view is not None
    assert view.wave_counts() == counted_afresh(view)[1]
    assert sum(view.counts().values()) == len(view.targets.keys() | view.executions.keys())


def test_applying_an_event_looks_only_at_the_devices_it_touches(monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = "cp-0123456789ab"
    devices = [f"dev-{n:05d}" for n in range(2000)]
    life = [*started(campaign, devices), *executions(campaign, devices[:1000], 0, ExecutionState.SUCCEEDED)]
    model = Campaigns()
    for seq, event in enumerate(life[:-1], 1):
        model.apply(event, seq)
    looked_at: list[str] = []
    share = CampaignView.share

    def noting(self: CampaignView, device: str) -> object:
        looked_at.append(device)
        return share(self, device)

    monkeypatch.setattr(CampaignView, "share", noting)
    model.apply(life[-1], len(life))
    assert looked_at == [devices[999], devices[999]]  # before and after its outcome
    expected = fold(life)
    assert expected is not None and model.views[campaign].counts() == expected.counts()


def test_events_of_a_campaign_never_created_are_parked() -> None:
    with pytest.raises(Park, match="never created"):
        Campaigns().apply(aborted("cp-000000000000"), 1)


def test_a_campaign_over_leaves_memory_at_the_next_batch_that_does_not_name_it() -> None:
    model = Campaigns()
    over, running = "cp-00000000000a", "cp-00000000000b"
    for seq, event in enumerate([*started(over, ["dev-1"]), finished(over), *started(running, ["dev-2"])], 1):
        model.apply(event, seq)
    assert model.missing([f"mesh.campaign.{over}.device.dev-1"]) == []  # named: kept
    assert model.missing([f"mesh.campaign.{running}.paused"]) == []
    assert over not in model.views and running in model.views
    assert model.missing([f"mesh.campaign.{over}.device.dev-1", "mesh.campaign.bad%name.x"]) == [over]
