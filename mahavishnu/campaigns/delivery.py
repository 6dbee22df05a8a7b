"""Sending a campaign's execution to a device through the command path, finding it again, canceling it.

One execution is one command per device, with the deterministic id of (campaign, device,
attempt) (core.campaigns.ids): a command document is sent as it is; a desired state is
merged into the device's shadow and sent as one `config.apply` (the shadow's own `desire`
sends a `config.set` per key); an update is the `update.install` command of its artifact,
and its rollback the same command with the version the device reported it replaced. The
command's id is its append's Nats-Msg-Id, so a send retried within the duplicate window is
stored once; `was_sent` finds it on its known subject after that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core import subjects
from core.campaigns import ids
from core.campaigns.state import CampaignView, Execution
from core.events import CommandIssued, CommandSucceeded, DesiredStateSet
from core.store import EventStore
from core.updates.states import INSTALL_COMMAND
from mahavishnu.control import commands, devices

NOTHING_TO_ROLL_BACK = "nothing to roll back: none of the campaign's keys had an earlier desired value"
NO_EARLIER_VERSION = "nothing to roll back: the device had no earlier version of the artifact"


async def send(store: EventStore, view: CampaignView, execution: Execution) -> CommandIssued | None:
    """Send `execution`'s command to its device as `view`'s document says, in the name of the campaign's creator.

    A rollback re-applies the device's desired state from before the campaign, or reinstalls
    the version it ran before the update; None when there is nothing to restore (none of the
    campaign's keys had an earlier value, no earlier version), and nothing is sent.
    """
    document, bounds = view.spec.document, view.spec.execution
    device, command_id, actor = execution.device_id, execution.command_id, view.created_by
    undone = ids.command_id(view.campaign_id, device, execution.attempt - 1) if execution.rollback else ""
    if document.command is None and document.update is None:
        desired = dict(document.desired or {})
        if undone:
            desired = await desired_before(store, device, undone, desired)
            if not desired:
                return None
        return await devices.desire_at_once(
            store, device, desired, ttl_s=bounds.ttl_s, timeout_s=bounds.timeout_s, actor=actor, command_id=command_id
        )
    if document.command is not None:
        name, args = document.command.name, dict(document.command.args)
    else:
        assert document.update is not None
        version, downgrade = document.update.version, document.update.allow_downgrade
        if undone:
            earlier = await version_replaced(store, device, undone)
            if earlier is None:
                return None
            version, downgrade = earlier, True  # back to what it ran: older, by definition
        name, args = INSTALL_COMMAND, {"name": document.update.name, "version": version, "allow_downgrade": downgrade}
    return await commands.send(
        store, device, name, args, ttl_s=bounds.ttl_s, timeout_s=bounds.timeout_s, actor=actor, command_id=command_id
    )


async def desired_before(store: EventStore, device_id: str, command_id: str, desired: dict[str, Any]) -> dict[str, Any]:
    """The values the keys of `desired` had in the device's desired state before campaign command `command_id`
    set them (keys without an earlier value are left out: a device's config has no unset)."""
    history = [
        stored.event
        async for stored in store.read(subjects.device_event(device_id, "desired"))
        if isinstance(stored.event, DesiredStateSet)
    ]
    index = next((i for i, event in enumerate(history) if event.event_id == f"{command_id}.desired"), 0)
    before = history[index - 1].state if index > 0 else {}
    return {key: before[key] for key in desired if key in before}


async def version_replaced(store: EventStore, device_id: str, command_id: str) -> str | None:
    """The version the device ran before update command `command_id` succeeded (its result's `previous`),
    or None: it had none, or the command did not succeed."""
    async for stored in store.read(subjects.device_event(device_id, "command")):
        event = stored.event
        if isinstance(event, CommandSucceeded) and event.command_id == command_id:
            previous = event.result.get("previous") if isinstance(event.result, dict) else None
            return previous if isinstance(previous, str) and previous else None
    return None


async def was_sent(store: EventStore, device_id: str, command_id: str) -> bool:
    """Whether the command is on COMMANDS (sent, and neither canceled nor aged out)."""
    return await store.last_subject_sequence(subjects.command(device_id, command_id)) > 0


async def cancel(
    store: EventStore, device_id: str, command_id: str, *, reason: str, site_of: Callable[[str], str]
) -> bool:
    """Cancel the command if its device has not taken it (at its edge site too: `site_of`, as `cmd cancel`);
    False when it is too late (taken, running, ended), unknown, or its site cannot tell."""
    try:
        await commands.cancel(store, command_id, actor="orchestrator", reason=reason, site_of=site_of)
    except commands.CommandRefused:
        return False
    return True
