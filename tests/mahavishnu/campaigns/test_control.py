"""The operators' steps on a real stream: what each step records, who did it, and what a state refuses.

No `up` here: the test records what the orchestrator would (the campaign's start), so
every step meets the state it is meant for; `campaign create` against a running `up` is
tests/mahavishnu/cli/test_campaign.py's.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core import subjects
from core.campaigns import ids
from core.campaigns.spec import CampaignSpec, CommandDocument, Document, RuleAction, Targets, Wave
from core.campaigns.states import CampaignStatus
from core.errors import ServiceRefusal
from core.events import (
    AuditRecorded,
    CampaignAborted,
    CampaignCreated,
    CampaignFinished,
    CampaignPaused,
    CampaignStarted,
    CampaignWaveOpened,
    Event,
)
from core.store import EventStore
from mahavishnu.campaigns import control
from mahavishnu.campaigns.control import CampaignRefused

SPEC = CampaignSpec(
    name="ping-pumps",
    document=Document(command=CommandDocument(name="ping")),
    targets=Targets(tags={"role": "pump"}),
    waves=[Wave(name="canary", percent=10), Wave(name="rest")],
)


Before = Callable[[str], list[Event]]  # what the orchestrator recorded about campaign `id`


async def made(store: EventStore, before: Before = lambda campaign: []) -> str:
    """A campaign as `create` records it, then what the orchestrator recorded after it."""
    campaign = ids.new_campaign_id()
    await store.append(CampaignCreated(campaign_id=campaign, spec=SPEC, actor="control"))
    for event in before(campaign):
        await store.append(event)
    return campaign


def started(campaign: str) -> list[Event]:
    return [CampaignStarted(campaign_id=campaign), CampaignWaveOpened(campaign_id=campaign, wave=0)]


async def steps_of(store: EventStore, campaign: str) -> list[tuple[str, str]]:
    return [
        (stored.event.tag, stored.event.actor)
        async for stored in store.read(subjects.campaign_steps(campaign))
        if stored.event is not None
    ]


async def audited(store: EventStore, campaign: str) -> list[AuditRecorded]:
    return [
        stored.event
        async for stored in store.read("mesh.audit.campaign.>")
        if isinstance(stored.event, AuditRecorded) and stored.event.target == campaign
    ]


async def test_pause_resume_next_wave_and_cancel_each_record_their_event_with_the_actor_and_an_audit(
    store: EventStore,
) -> None:
    campaign = await made(store, started)
    await control.pause(store, campaign, actor="olga")
    await control.resume(store, campaign, actor="olga")
    await control.pause(store, campaign, actor="olga")
    assert await control.next_wave(store, campaign, actor="olga") == 1  # and resumed with it, at once
    await control.cancel(store, campaign, actor="olga", force=True)

    assert (await steps_of(store, campaign))[3:] == [
        ("campaign.paused.v1", "olga"),
        ("campaign.resumed.v1", "olga"),
        ("campaign.paused.v1", "olga"),
        ("campaign.wave_opened.v1", "olga"),
        ("campaign.resumed.v1", "olga"),
        ("campaign.canceled.v1", "olga"),
    ]
    view = await control.campaign(store, campaign)
    assert (view.status, view.waves_open, view.force_canceled) == (CampaignStatus.CANCELED, 2, True)
    records = await audited(store, campaign)
    assert [(record.actor, record.action) for record in records] == [
        ("olga", f"campaign.{step}") for step in ("pause", "resume", "pause", "next_wave", "cancel")
    ]
    assert records[3].details == {"wave": 1, "resumed": True}
    assert records[4].details == {"force": True}


@pytest.mark.parametrize(
    ("before", "step", "said"),
    [
        (lambda c: [], "pause", "is created: only a running campaign can be paused"),
        (lambda c: [], "resume", "is created: only a paused campaign can be resumed"),
        (lambda c: [], "next_wave", "is created: a wave opens only in a running or paused campaign"),
        (started, "resume", "is running: only a paused campaign can be resumed"),
        (
            lambda c: [*started(c), CampaignPaused(campaign_id=c, reason="gate", rule="waves[0].success: ...")],
            "pause",
            "is paused (waves[0].success: ...): only a running campaign can be paused",
        ),
        (
            lambda c: [*started(c), CampaignWaveOpened(campaign_id=c, wave=1)],
            "next_wave",
            "has opened all its 2 waves: there is no next wave to open",
        ),
        (
            lambda c: [*started(c), CampaignAborted(campaign_id=c, rule="abort[0]: ...", action=RuleAction.CANCEL)],
            "resume",
            "is aborted (abort[0]: ...): only a paused campaign can be resumed",
        ),
        (
            lambda c: [*started(c), CampaignFinished(campaign_id=c, reason="every execution ended")],
            "cancel",
            "is finished (every execution ended) already: nothing left to cancel",
        ),
    ],
)
async def test_a_step_the_state_does_not_allow_is_refused_in_one_line_and_records_nothing(
    store: EventStore, before: Before, step: str, said: str
) -> None:
    campaign = await made(store, before)
    before = await steps_of(store, campaign)
    with pytest.raises(CampaignRefused) as refused:
        await getattr(control, step)(store, campaign, actor="olga")
    assert str(refused.value) == f"campaign {campaign} {said}"
    assert await steps_of(store, campaign) == before
    assert await audited(store, campaign) == []


async def test_an_aborted_campaign_can_still_be_canceled(store: EventStore) -> None:
    campaign = await made(
        store, lambda c: [*started(c), CampaignAborted(campaign_id=c, rule="abort[0]: ...", action=RuleAction.ROLLBACK)]
    )
    await control.cancel(store, campaign, actor="olga")
    assert (await control.campaign(store, campaign)).status == CampaignStatus.CANCELED


async def test_no_such_campaign_and_no_campaign_id_are_refused(store: EventStore) -> None:
    with pytest.raises(CampaignRefused, match=r"^no campaign cp-0000000000ff: see `mahavishnu campaign list`$"):
        await control.pause(store, "cp-0000000000ff", actor="olga")
    with pytest.raises(CampaignRefused, match=r"^'cp-x' is no campaign id"):
        await control.pause(store, "cp-x", actor="olga")


async def test_create_needs_the_running_mesh_to_check_its_targets(store: EventStore) -> None:
    # This mesh runs no query service: create says so, and records nothing.
    with pytest.raises(ServiceRefusal, match=r"no query service answers: is `mahavishnu up` running\?"):
        await control.create(store, SPEC, actor="olga")
