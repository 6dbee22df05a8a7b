"""The campaigns read model's counts, one event at a time, against the fold's own counts (pure)."""

from __future__ import annotations

import pytest

from core.campaigns.state import CampaignView, apply, fold
from core.campaigns.states import ExecutionState
from projections.campaign_tally import Tally
from projections.campaigns import Campaigns
from projections.projection import Park
from tests.projections.campaign_life import aborted, executions, finished, shuffled_life, started


@pytest.mark.parametrize("seed", range(12))
def test_counted_one_event_at_a_time_they_are_the_views_own_counts(seed: int) -> None:
    _, events = shuffled_life(seed)
    view: CampaignView | None = None
    tally = Tally()
    for event in events:
        if view is not None:
            tally.before(view, event)
        view = apply(view, event)
        assert view is not None
        tally.after(view)
        assert tally.counts() == view.counts()
    assert view is not None
    assert tally.wave_counts(view) == view.wave_counts()
    assert Tally.of(view).counts() == view.counts() and Tally.of(view).wave_counts(view) == view.wave_counts()


def test_applying_an_event_never_walks_the_whole_campaign(monkeypatch: pytest.MonkeyPatch) -> None:
    campaign = "cp-0123456789ab"
    devices = [f"dev-{n:05d}" for n in range(2000)]
    life = [*started(campaign, devices), *executions(campaign, devices[:1000], 0, ExecutionState.SUCCEEDED)]
    expected = fold(life)
    assert expected is not None

    def walks(self: CampaignView) -> None:
        raise AssertionError("the read model walked every execution of the campaign for one event")

    model = Campaigns()
    with monkeypatch.context() as patched:
        patched.setattr(CampaignView, "counts", walks)
        patched.setattr(CampaignView, "wave_counts", walks)
        for seq, event in enumerate(life, 1):
            model.apply(event, seq)
    assert model.tallies[campaign].counts() == expected.counts()


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
