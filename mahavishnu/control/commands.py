"""Commands for devices, seen from the control side: send, cancel, and their state folded from events."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import msgspec

from core import subjects
from core.errors import MahavishnuError
from core.events import CommandCanceled, CommandEvent, CommandIssued, Event, decode
from core.events.base import utc_now
from core.events.command import ENDINGS
from core.store import EventStore
from projections.commands import step
from projections.projection import Park

TERMINAL = tuple(ENDINGS.values())


class CommandRefused(MahavishnuError):
    """An operator's request about a command was refused: there is no such command, or it is too late to cancel it.

    Not edge.errors.CommandError, which a device's handler raises when the command itself failed.
    """


@dataclass(frozen=True)
class CommandView:
    """What is known of one command: its request and the last step of its life."""

    command_id: str
    device_id: str
    name: str
    args: dict[str, Any]
    state: str = "issued"
    result: Any = None
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def evolve(view: CommandView, event: Event) -> CommandView:
    """Apply one lifecycle event (pure). A terminal state is final: later events do not move it.

    The steps are the commands read model's (projections.commands.step): one state machine.
    """
    if view.finished or not isinstance(event, CommandEvent):
        return view
    try:
        state, result, detail = step(event)
    except Park:
        return view
    return replace(view, state=state, result=result, detail=detail)


def fold(issued: CommandIssued, events: Iterable[Event], *, now: datetime | None = None) -> CommandView:
    """The view of a command from its issue and the lifecycle events about it (pure).

    With `now`, a command its device has not even accepted within its time to live reads
    as expired: the agent would refuse it as expired if it came now.
    """
    view = fold_into(CommandView(issued.command_id, issued.device_id, issued.name, dict(issued.args)), events)
    if now is not None and view.state == "issued" and now > issued.occurred_at + timedelta(seconds=issued.ttl_s):
        view = replace(view, state="expired", detail="its device did not take it within its time to live")
    return view


def fold_into(view: CommandView, events: Iterable[Event]) -> CommandView:
    """Apply the events that concern `view`'s command, ignoring the others (pure)."""
    for event in events:
        if isinstance(event, CommandEvent) and event.command_id == view.command_id:
            view = evolve(view, event)
    return view


def new_command_id() -> str:
    return f"c-{uuid.uuid4().hex[:20]}"


async def send(
    store: EventStore, device_id: str, name: str, args: dict[str, Any], *, ttl_s: float, timeout_s: float, actor: str
) -> CommandIssued:
    """Append a command for the device on mesh.cmd.<device>.<command-id>.

    Its time to live is judged by the agent when the command reaches it: past it, the
    agent records command.expired and never runs it, so the expiry is an event like every
    other outcome, even for a device that was offline for days. Until then, a command no
    device took within its time to live reads as expired (see `fold`).
    """
    command = CommandIssued(
        command_id=new_command_id(),
        device_id=device_id,
        name=name,
        args=args,
        ttl_s=ttl_s,
        timeout_s=timeout_s,
        actor=actor,
    )
    command = msgspec.structs.replace(command, correlation_id=command.command_id)
    await store.append(command)
    await store.audit.record(
        actor=actor,
        category="command",
        action="command.send",
        target=device_id,
        details={"command_id": command.command_id, "name": name},
    )
    return command


async def wait_for_outcome(store: EventStore, command: CommandIssued, *, deadline_s: float) -> CommandView:
    """Follow the device's command events until this command finishes or `deadline_s` passes."""
    live: list[Event] = []  # what arrives while we also read what was stored before
    done = asyncio.Event()

    async def on_event(msg: Any) -> None:
        with contextlib.suppress(MahavishnuError):  # a malformed event is not ours to judge here
            live.append(decode(msg.data))
        if fold(command, live).finished:
            done.set()

    subject = subjects.device_event(command.device_id, "command")
    sub = await store.nc.subscribe(subject, cb=on_event)
    try:
        stored = [s.event async for s in store.read(subject) if s.event is not None]
        if not fold(command, [*stored, *live]).finished:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), deadline_s)
    finally:
        await sub.unsubscribe()
    return fold(command, [*stored, *live])


async def find(store: EventStore, command_id: str) -> CommandView:
    """The command `command_id`, from the COMMANDS stream and its device's events; CommandRefused if unknown."""
    subjects.token(command_id, what="command id")
    issued = [s.event async for s in store.read(f"{subjects.COMMANDS_PREFIX}.*.{command_id}")]
    command = next((e for e in issued if isinstance(e, CommandIssued)), None)
    if command is None:
        raise CommandRefused(
            f"no command {command_id!r} (canceled, or older than the COMMANDS stream keeps): "
            "see `mahavishnu cmd list --device ID`"
        )
    events = [s.event async for s in store.read(subjects.device_event(command.device_id, "command"))]
    return fold(command, [e for e in events if e is not None], now=utc_now())


async def list_for(store: EventStore, device_id: str) -> list[CommandView]:
    """Every command still in the COMMANDS stream for the device, with its state."""
    issued = [s.event async for s in store.read(subjects.device_commands(device_id))]
    events = [s.event async for s in store.read(subjects.device_event(device_id, "command"))]
    known = [e for e in events if e is not None]
    return [fold(c, known, now=utc_now()) for c in issued if isinstance(c, CommandIssued)]


async def cancel(store: EventStore, command_id: str, *, actor: str, reason: str = "canceled by an operator") -> None:
    """Cancel a command that its device has not received yet: remove it from the stream, record the cancel.

    CommandRefused when it already reached the device (it is running or done) or is unknown.
    """
    view = await find(store, command_id)
    if view.state != "issued":
        raise CommandRefused(
            f"command {command_id} is already {view.state}: only a command not yet received can be canceled"
        )
    seq = await store.last_subject_sequence(subjects.command(view.device_id, command_id))
    delivered = await store.delivered_sequence("COMMANDS", subjects.device_consumer(view.device_id))
    if not seq or seq <= delivered or not await store.delete_message("COMMANDS", seq):
        raise CommandRefused(f"command {command_id} was already delivered to {view.device_id}: too late to cancel")
    await store.append(CommandCanceled(command_id=command_id, device_id=view.device_id, actor=actor, reason=reason))
    await store.audit.record(
        actor=actor,
        category="command",
        action="command.cancel",
        target=view.device_id,
        details={"command_id": command_id},
    )
