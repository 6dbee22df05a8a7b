"""Campaigns' events as an orchestrator would append them, for the campaigns read model's tests (no orchestrator)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from core.campaigns.ids import command_id, new_campaign_id
from core.campaigns.spec import (
    AbortRule,
    CampaignSpec,
    CommandDocument,
    Document,
    FailureType,
    Schedule,
    Targets,
    Wave,
)
from core.campaigns.states import ExecutionState
from core.events import Event
from core.events.campaign import (
    CampaignAborted,
    CampaignCreated,
    CampaignFinished,
    CampaignPaused,
    CampaignStarted,
    CampaignTargeted,
    CampaignWaveOpened,
    ExecutionChanged,
    ExecutionNotified,
)

ENDINGS = (ExecutionState.SUCCEEDED, ExecutionState.FAILED, ExecutionState.TIMED_OUT, ExecutionState.REJECTED)


def spec(name: str = "reboot the racks", waves: int = 2, schedule: Schedule | None = None) -> CampaignSpec:
    return CampaignSpec(
        name=name,
        document=Document(command=CommandDocument(name="reboot")),
        targets=Targets(tags={"rack": "r7"}),
        waves=[Wave(name=f"wave {n}", percent=100 / waves) for n in range(waves)],
        abort=[AbortRule(failure_type=FailureType.FAILED, threshold_pct=10, min_executed=100)],
        schedule=schedule or Schedule(),
    )


def started(
    campaign: str,
    devices: Sequence[str],
    *,
    waves: int = 2,
    name: str = "reboot the racks",
    schedule: Schedule | None = None,
) -> list[Event]:
    """Created by ann, started, its devices targeted (in chunks, split across the waves), wave 0 open."""
    events: list[Event] = [
        CampaignCreated(campaign_id=campaign, spec=spec(name, waves, schedule), actor="ann"),
        CampaignStarted(campaign_id=campaign, actor="control"),
    ]
    share = -(-len(devices) // waves)
    for wave in range(waves):
        mine = devices[wave * share : (wave + 1) * share]
        events += [
            CampaignTargeted(campaign_id=campaign, devices=list(mine[i : i + 500]), wave=wave)
            for i in range(0, len(mine), 500)
        ]
    events.append(CampaignWaveOpened(campaign_id=campaign, wave=0, reason="start"))
    return events


def executions(
    campaign: str, devices: Sequence[str], wave: int, ending: ExecutionState, *, attempt: int = 1
) -> list[Event]:
    """Each device notified, in progress, then ended as `ending`: three events a device."""
    events: list[Event] = []
    for device in devices:
        command = command_id(campaign, device, attempt)
        events += [
            ExecutionNotified(campaign_id=campaign, device_id=device, attempt=attempt, command_id=command, wave=wave),
            ExecutionChanged(campaign_id=campaign, device_id=device, attempt=attempt, state=ExecutionState.IN_PROGRESS),
            ExecutionChanged(campaign_id=campaign, device_id=device, attempt=attempt, state=ending),
        ]
    return events


def aborted(campaign: str) -> CampaignAborted:
    return CampaignAborted(
        campaign_id=campaign, rule="abort[0]: failed 15.2% >= 10% of 105 executed", action="cancel", actor="control"
    )


def finished(campaign: str) -> CampaignFinished:
    return CampaignFinished(campaign_id=campaign, reason="every execution ended", actor="control")


def paused(campaign: str) -> CampaignPaused:
    return CampaignPaused(campaign_id=campaign, reason="wave 0's error gate", rule="wave[0].error: 20% >= 10%")


def shuffled_life(seed: int, devices: int = 60, waves: int = 3) -> tuple[str, list[Event]]:
    """A campaign whose executions arrive in a random order: retries, rollbacks, late news, repeats and strays."""
    rng = random.Random(seed)
    campaign = new_campaign_id()
    names = [f"dev-{n:03d}" for n in range(devices)]
    events = started(campaign, names, waves=waves)
    events.append(CampaignTargeted(campaign_id=campaign, devices=[names[0], names[0], "dev-late"], wave=waves + 1))
    attempts: dict[str, int] = {}
    for _ in range(devices * 4):
        device = rng.choice([*names, "dev-stray"])
        attempt = attempts.get(device, 0)
        roll = rng.random()
        if roll < 0.35 or attempt == 0:
            attempt = attempts[device] = attempt + 1
            events.append(
                ExecutionNotified(
                    campaign_id=campaign,
                    device_id=device,
                    attempt=attempt,
                    command_id=command_id(campaign, device, attempt),
                    wave=rng.choice([0, 1, waves - 1, waves + 2]),
                    rollback=rng.random() < 0.1,
                )
            )
        state = rng.choice([ExecutionState.IN_PROGRESS, *ENDINGS, ExecutionState.CANCELED, ExecutionState.REMOVED])
        events.append(
            ExecutionChanged(
                campaign_id=campaign,
                device_id=device,
                attempt=rng.choice([attempt, attempt, max(1, attempt - 1)]),
                state=state,
                rollback=rng.random() < 0.05,
            )
        )
        if rng.random() < 0.05:
            events.append(events[rng.randrange(len(events))])  # read twice
    return campaign, events
