"""Sending a campaign's execution to a device through the command path, finding it again, canceling it.

One execution is one command per device, with the deterministic id of (campaign, device,
attempt) (core.campaigns.ids): a command document is sent as it is; a desired state is
merged into the device's shadow and sent as one `config.apply` (the shadow's own `desire`
sends a `config.set` per key). The command's id is its append's Nats-Msg-Id, so a send
retried within the duplicate window is stored once; `was_sent` finds it on its known
subject after that.
"""

from __future__ import annotations

from core import subjects
from core.campaigns.state import CampaignView
from core.events import CommandIssued
from core.store import EventStore
from mahavishnu.control import commands, devices


async def send(store: EventStore, view: CampaignView, device_id: str, command_id: str) -> CommandIssued:
    """Send `command_id` to `device_id` as `view`'s document says, in the name of the campaign's creator."""
    document, execution = view.spec.document, view.spec.execution
    bounds = {"ttl_s": execution.ttl_s, "timeout_s": execution.timeout_s}
    if document.command is not None:
        return await commands.send(
            store,
            device_id,
            document.command.name,
            dict(document.command.args),
            actor=view.created_by,
            command_id=command_id,
            **bounds,
        )
    return await devices.desire_at_once(
        store, device_id, dict(document.desired or {}), actor=view.created_by, command_id=command_id, **bounds
    )


async def was_sent(store: EventStore, device_id: str, command_id: str) -> bool:
    """Whether the command is on COMMANDS (sent, and neither canceled nor aged out)."""
    return await store.last_subject_sequence(subjects.command(device_id, command_id)) > 0


async def cancel(store: EventStore, device_id: str, command_id: str, *, reason: str) -> bool:
    """Cancel the command if its device has not taken it (its CommandCanceled then ends the execution); False
    when it is too late (taken, running, ended) or unknown."""
    try:
        await commands.cancel(store, command_id, actor="orchestrator", reason=reason)
    except commands.CommandRefused:
        return False
    return True
