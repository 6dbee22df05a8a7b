"""The operators' steps on campaigns: create, pause, resume, next wave, cancel.

Each step is one event on the campaign's stream (CAMPAIGNS), with the operator as its
actor, and one audit record; `up`'s orchestrator reacts to the events. What a step may do
depends on the campaign's state, folded from its events (core.campaigns.state, the same
fold the orchestrator and the read model use); a step the state does not allow is refused
with CampaignRefused, one line saying why and what to do.

The steps append without a concurrency check: the orchestrator writes to the same campaign
all the time (each notification, each outcome), so no expected sequence would hold for an
operator's step. A race is harmless because the fold ignores a step that no longer fits
(a pause that lands after the campaign finished changes nothing).

`create` asks the running mesh's devices query (mesh.q.devices.list) whether the filter
matches any device now: a filter with a typo would otherwise make a campaign of nothing.
"""

from __future__ import annotations

from typing import Any

from core import subjects
from core.campaigns import ids
from core.campaigns.spec import CampaignSpec, Targets
from core.campaigns.state import CampaignView, fold
from core.campaigns.states import CampaignStatus
from core.errors import MahavishnuError
from core.events import (
    CampaignCanceled,
    CampaignCreated,
    CampaignPaused,
    CampaignResumed,
    CampaignWaveOpened,
    Event,
)
from core.store import EventStore
from core.updates import naming
from mahavishnu.campaigns.targets import matches
from mahavishnu.control.requests import query
from mahavishnu.updates import artifacts
from projections.device_queries import PAGE_MAX

AUDIT_CATEGORY = "campaign"
# The states whose campaign still runs or may run again: an operator may cancel it.
_CANCELABLE = (CampaignStatus.CREATED, CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.ABORTED)


class CampaignRefused(MahavishnuError):
    """An operator's step on a campaign is not possible: no such campaign, or not in its state."""


async def create(store: EventStore, spec: CampaignSpec, *, actor: str) -> str:
    """Record a new campaign (`campaign.created`), audited; its id.

    CampaignRefused when its targets match no device now or its update names no artifact of
    the mesh; RequestError when the devices
    query cannot be asked (no `up` running).
    """
    update = spec.document.update
    if update is not None and naming.target_path(update.name, update.version) not in await artifacts.artifacts(store):
        raise CampaignRefused(
            f"campaign {spec.name!r}: no artifact {update.name}@{update.version} on the mesh; "
            "add it with `mahavishnu artifact add`, or see `mahavishnu artifact list`"
        )
    if not await _any_target(store, spec.targets):
        raise CampaignRefused(
            f"campaign {spec.name!r}: its targets ({describe(spec.targets)}) match no enrolled or registered "
            "device now; check them with `mahavishnu device list`"
        )
    campaign_id = ids.new_campaign_id()
    await store.append(CampaignCreated(campaign_id=campaign_id, spec=spec, actor=actor))
    await _audit(store, actor, "create", campaign_id, name=spec.name, document=_document(spec))
    return campaign_id


async def pause(store: EventStore, campaign_id: str, *, actor: str) -> None:
    """Stop notifying devices until `resume`; executions under way go on. CampaignRefused unless it runs."""
    view = await campaign(store, campaign_id)
    if view.status != CampaignStatus.RUNNING:
        raise CampaignRefused(f"campaign {campaign_id} is {_state(view)}: only a running campaign can be paused")
    await store.append(CampaignPaused(campaign_id=campaign_id, reason=f"paused by {actor}", actor=actor))
    await _audit(store, actor, "pause", campaign_id)


async def resume(store: EventStore, campaign_id: str, *, actor: str) -> None:
    """Go on after a pause (an operator's, a rule's or a gate's). CampaignRefused unless it is paused."""
    view = await campaign(store, campaign_id)
    if view.status != CampaignStatus.PAUSED:
        raise CampaignRefused(f"campaign {campaign_id} is {_state(view)}: only a paused campaign can be resumed")
    await store.append(CampaignResumed(campaign_id=campaign_id, actor=actor))
    await _audit(store, actor, "resume", campaign_id, rule=view.rule)


async def next_wave(store: EventStore, campaign_id: str, *, actor: str) -> int:
    """Open the next wave now, whatever its predecessor's gate says; the wave opened.

    A paused campaign (a gate that pauses for this very step, say) is resumed with it, in
    one atomic append. CampaignRefused when it has no waves, none is left, or it is neither
    running nor paused.
    """
    view = await campaign(store, campaign_id)
    if view.status not in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
        raise CampaignRefused(
            f"campaign {campaign_id} is {_state(view)}: a wave opens only in a running or paused campaign"
        )
    waves = len(view.spec.waves)
    if view.waves_open >= waves:
        said = "has no waves" if waves == 0 else f"has opened all its {waves} waves"
        raise CampaignRefused(f"campaign {campaign_id} {said}: there is no next wave to open")
    wave = view.waves_open
    events: list[Event] = [CampaignWaveOpened(campaign_id=campaign_id, wave=wave, reason="operator", actor=actor)]
    if view.status == CampaignStatus.PAUSED:
        events.append(CampaignResumed(campaign_id=campaign_id, actor=actor))
    await store.append(events)
    await _audit(store, actor, "next_wave", campaign_id, wave=wave, resumed=view.status == CampaignStatus.PAUSED)
    return wave


async def cancel(store: EventStore, campaign_id: str, *, actor: str, force: bool = False) -> None:
    """Notify no device more and cancel the executions not yet taken; `force` also those in progress.

    CampaignRefused when it is canceled or finished already.
    """
    view = await campaign(store, campaign_id)
    if view.status not in _CANCELABLE:
        raise CampaignRefused(f"campaign {campaign_id} is {_state(view)} already: nothing left to cancel")
    await store.append(
        CampaignCanceled(campaign_id=campaign_id, force=force, reason=f"canceled by {actor}", actor=actor)
    )
    await _audit(store, actor, "cancel", campaign_id, force=force)


async def campaign(store: EventStore, campaign_id: str) -> CampaignView:
    """The campaign's status, waves and rule, folded from its own events (not its executions: its counts are empty).

    CampaignRefused when there is no such campaign.
    """
    if not ids.is_campaign_id(campaign_id):
        raise CampaignRefused(
            f"{campaign_id!r} is no campaign id (cp- and 12 hex digits): see `mahavishnu campaign list`"
        )
    events = [stored.event async for stored in store.read(subjects.campaign_steps(campaign_id)) if stored.event]
    view = fold(events)
    if view is None:
        raise CampaignRefused(f"no campaign {campaign_id}: see `mahavishnu campaign list`")
    return view


def describe(targets: Targets) -> str:
    """The targets in a few words, as a refusal names them (pure)."""
    if targets.devices:
        shown = ", ".join(targets.devices[:3])
        return f"devices {shown}{', ...' if len(targets.devices) > 3 else ''}"
    parts = [f"tag {key}={value}" for key, value in targets.tags.items()]
    parts += [f"{field} {value}" for field in ("site", "transport", "presence") if (value := getattr(targets, field))]
    return ", ".join(parts)


async def _any_target(store: EventStore, targets: Targets) -> bool:
    """Whether any device in the devices read model is one of `targets` now.

    The query filters what it can (presence, site, transport, one tag; a single listed
    device by its id as a prefix); targets.matches checks each row for the rest, the
    same rule the orchestrator applies. Pages until one matches.
    """
    request: dict[str, Any] = {"limit": PAGE_MAX}
    for field in ("site", "transport", "presence"):
        if getattr(targets, field) is not None:
            request[field] = getattr(targets, field)
    if targets.tags:
        key, value = next(iter(targets.tags.items()))
        request["tag"] = f"{key}={value}"
    if len(targets.devices) == 1:
        request["prefix"] = targets.devices[0]
    while True:
        page = await query(store.nc, "devices.list", request)
        if any(matches(targets, device) for device in page["devices"]):
            return True
        if page["next"] is None:
            return False
        request["after"] = page["next"]


def _document(spec: CampaignSpec) -> str:
    """What the campaign does, for its audit record: a command's name, never its arguments (they may hold secrets)."""
    document = spec.document
    if document.command is not None:
        return f"command {document.command.name}"
    if document.update is not None:
        return f"update {document.update.name}@{document.update.version}"
    return "desired state"


def _state(view: CampaignView) -> str:
    return f"{view.status.value} ({view.rule or view.reason})" if view.rule or view.reason else view.status.value


async def _audit(store: EventStore, actor: str, step: str, campaign_id: str, **details: Any) -> None:
    await store.audit.record(
        actor=actor, category=AUDIT_CATEGORY, action=f"campaign.{step}", target=campaign_id, details=details
    )
