"""Commands for devices, seen from the control side: send, cancel, and their state.

A command's state is the command state machine's (core.commands): the same steps, ranking
and time-to-live rule as the commands read model that the NATS and HTTP doors read.
`status` and `wait_for_outcome` read that read model in the running mesh, so the command
line says what those doors say; `find` and `list_for` fold the streams themselves, for
`cancel` (which must look at the stream anyway) and `cmd list`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import msgspec
import nats.errors
from nats.js.api import DeliverPolicy

from core import subjects
from core.commands import TERMINAL, CommandState, Step, advances, effective_step, ending, step
from core.errors import MahavishnuError
from core.events import CommandCanceled, CommandEvent, CommandIssued, Event, decode
from core.events.base import utc_now
from core.store import EventStore
from core.store.nats_errors import from_exception
from core.streams import stream_for
from mahavishnu.control import site_copies
from mahavishnu.control.requests import RequestError, query, request_applied
from projections.command_requests import CommandRequest, Send
from projections.commands import ISSUES, REPORTS

SETTLE_S = 10.0  # how long the running mesh may take to apply what is stored before a read


class CommandRefused(MahavishnuError):
    """An operator's request about a command could not be served: no such command, too late to cancel it,
    or the running mesh could not be asked.

    Not edge.errors.CommandError, which a device's handler raises when the command itself failed.
    """


@dataclass(frozen=True)
class CommandView:
    """What is known of one command: its request and the furthest step of its life."""

    command_id: str
    device_id: str
    name: str
    args: dict[str, Any]
    state: CommandState = CommandState.ISSUED
    result: Any = None
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def evolve(view: CommandView, event: Event) -> CommandView:
    """Apply one lifecycle event (pure): it moves the command only to a later step, so a terminal state is final."""
    found = step(event)
    if found is None or not advances(view.state, found.state):
        return view
    return replace(view, state=found.state, result=found.result, detail=found.detail)


def fold(issued: CommandIssued, events: Iterable[Event], *, now: datetime | None = None) -> CommandView:
    """The view of a command from its issue and the lifecycle events about it (pure).

    With `now`, it reads as it does at `now` (core.commands.effective_state): a command its
    device has not even accepted within its time to live reads as expired, since the agent
    would refuse it as expired if it came now.
    """
    view = fold_into(CommandView(issued.command_id, issued.device_id, issued.name, dict(issued.args)), events)
    if now is None:
        return view
    current = effective_step(
        Step(view.state, view.result, view.detail), issued_at=issued.occurred_at, ttl_s=issued.ttl_s, now=now
    )
    return replace(view, state=current.state, result=current.result, detail=current.detail)


def fold_into(view: CommandView, events: Iterable[Event]) -> CommandView:
    """Apply the events that concern `view`'s command, ignoring the others (pure)."""
    for event in events:
        if isinstance(event, CommandEvent) and event.command_id == view.command_id:
            view = evolve(view, event)
    return view


def from_row(row: dict[str, Any]) -> CommandView:
    """The view of a row of the commands read model as the queries answer it (pure).

    CommandRefused when its state is one this version does not know (a newer mesh wrote it).
    """
    try:
        state = CommandState(row["state"])
    except ValueError:
        raise CommandRefused(
            f"command {row['command_id']} is {row['state']!r}, a state this version does not know: upgrade mahavishnu"
        ) from None
    return CommandView(
        command_id=row["command_id"],
        device_id=row["device_id"],
        name=row["name"] or "",
        args=dict(row["args"] or {}),
        state=state,
        result=row["result"],
        detail=row["detail"] or "",
    )


def new_command_id() -> str:
    return f"c-{uuid.uuid4().hex[:20]}"


async def send(
    store: EventStore,
    device_id: str,
    name: str,
    args: dict[str, Any],
    *,
    ttl_s: float,
    timeout_s: float,
    actor: str,
    command_id: str | None = None,
) -> CommandIssued:
    """Append a command for the device on mesh.cmd.<device>.<command-id>.

    Its time to live is judged by the agent when the command reaches it: past it, the
    agent records command.expired and never runs it, so the expiry is an event like every
    other outcome, even for a device that was offline for days. Until then, a command no
    device took within its time to live reads as expired (core.commands.effective_state).

    `command_id`: a deterministic id (a campaign's, core.campaigns.ids) instead of a new one;
    it is then also the append's Nats-Msg-Id, so sending it again within the stream's
    duplicate window stores it once.
    """
    command = CommandIssued(
        command_id=command_id or new_command_id(),
        device_id=device_id,
        name=name,
        args=args,
        ttl_s=ttl_s,
        timeout_s=timeout_s,
        actor=actor,
    )
    command = msgspec.structs.replace(
        command, correlation_id=command.command_id, event_id=command_id or command.event_id
    )
    await store.append(command)
    await store.audit.record(
        actor=actor,
        category="command",
        action="command.send",
        target=device_id,
        details={"command_id": command.command_id, "name": name},
    )
    return command


def sender(store: EventStore) -> Send:
    """How the HTTP door sends an operator's command from the dashboard: `send`, in the operator's name."""

    async def send_one(actor: str, device_id: str, command: CommandRequest) -> str:
        issued = await send(
            store,
            device_id,
            command.name,
            dict(command.args),
            ttl_s=command.ttl_s,
            timeout_s=command.timeout_s,
            actor=actor,
        )
        return issued.command_id

    return send_one


FOLLOW_TRIES = 3  # a subscription to a device's reports asked for, before `--wait` gives up


class _Endings:
    """The commands whose ending a device reported on the live subjects, since the subscription began."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.changed = asyncio.Event()

    async def on_report(self, msg: Any) -> None:
        with contextlib.suppress(MahavishnuError, msgspec.MsgspecError):  # not ours to judge here
            event = decode(msg.data)
            if isinstance(event, CommandEvent) and ending(event) is not None:
                self.ids.add(event.command_id)
                self.changed.set()


@contextlib.asynccontextmanager
async def _endings(store: EventStore, device_id: str) -> AsyncIterator[_Endings]:
    """The device's reports as the stream stores them from now on, not as they are published: an
    edge site's device reports at its site, and its reports reach the hub's EVENTS by sourcing,
    which stores them without publishing them here (ADR 0013)."""
    endings = _Endings()
    subject = subjects.device_event(device_id, "command")
    for attempt in range(1, FOLLOW_TRIES + 1):
        try:
            # Created before anything is sent, starting after what is stored now: no report is missed.
            sub = await store.js.subscribe(
                subject,
                stream=stream_for(subject, store.streams).name,
                cb=endings.on_report,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
            break
        except (TimeoutError, nats.errors.Error) as exc:
            # a cluster electing new leaders (a node just died) answers late: ask again, then say so
            if attempt == FOLLOW_TRIES or not isinstance(exc, TimeoutError):
                raise from_exception(exc, doing=f"following {device_id}'s reports") from exc
    try:
        yield endings
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def send_and_wait(
    store: EventStore,
    device_id: str,
    name: str,
    args: dict[str, Any],
    *,
    ttl_s: float,
    timeout_s: float,
    actor: str,
    deadline_s: float,
) -> CommandView:
    """`send`, then wait until the command has ended in the commands read model, or `deadline_s` passed.

    The device's reports are subscribed to before the command is sent, so the wait needs
    no first look at the read model: the one read is after the ending (or at the deadline).
    """
    async with _endings(store, device_id) as endings:
        command = await send(store, device_id, name, args, ttl_s=ttl_s, timeout_s=timeout_s, actor=actor)
        return await _until_ended(store, command, endings, deadline_s, look_first=False)


async def wait_for_outcome(store: EventStore, command: CommandIssued, *, deadline_s: float) -> CommandView:
    """Wait until `command` has ended in the running mesh's commands read model, or `deadline_s` passed; its view.

    No history is read (as eventsourcing's `ProjectionRunner.wait(notification_id, timeout)`):
    a subscription to the device's reports wakes this when one of them ends the command;
    then the read model is awaited up to what is stored and one row is read (`status`).
    At the deadline the row is read as it is: a command no device took within its time to
    live reads expired. CommandRefused when the running mesh cannot be asked.
    """
    async with _endings(store, command.device_id) as endings:
        # Sent before this subscription: it may have ended already, so look once first.
        return await _until_ended(store, command, endings, deadline_s, look_first=True)


async def _until_ended(
    store: EventStore, command: CommandIssued, endings: _Endings, deadline_s: float, *, look_first: bool
) -> CommandView:
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + deadline_s
    look = look_first
    pause = 0.02
    while True:
        if look:
            view = await status(store, command.command_id, device_id=command.device_id)
            if view.finished:
                return view
            if command.command_id in endings.ids and loop.time() < ends_at:
                # Seen live an instant before the stream stored it: a later look finds it. Each
                # look is an audited query, so the pauses grow rather than ask again and again.
                await asyncio.sleep(min(pause, max(ends_at - loop.time(), 0)))
                pause = min(pause * 2, 1.0)
                continue
        remaining = ends_at - loop.time()
        if remaining <= 0:
            return await status(store, command.command_id, device_id=command.device_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(endings.changed.wait(), remaining)
        endings.changed.clear()
        look = command.command_id in endings.ids


async def status(store: EventStore, command_id: str, *, device_id: str = "*") -> CommandView:
    """The command `command_id` as the running mesh's commands read model has it, once it applied all stored now.

    What `mesh.q.commands.get` and `/api/commands/{id}` answer, TTL rule included; it first
    waits until the read model has applied the last event stored on the command's subjects,
    so a command just sent or just answered reads as it is. `device_id` narrows that to
    the device's reports. CommandRefused when the command is unknown or the mesh cannot be asked.
    """
    subjects.token(command_id, what="command id")
    if device_id != "*":
        subjects.token(device_id, what="device id")
    positions = {
        ISSUES: await store.last_subject_sequence(f"{subjects.COMMANDS_PREFIX}.{device_id}.{command_id}"),
        REPORTS: await store.last_subject_sequence(f"{subjects.EVENTS_PREFIX}.device.{device_id}.command"),
    }
    try:
        await request_applied(store.nc, "commands", positions, timeout_s=SETTLE_S)
        row = await query(store.nc, "commands.get", {"id": command_id})
    except RequestError as exc:
        if exc.status == 404:
            raise CommandRefused(
                f"no command {command_id!r} (older than the read model keeps, or never sent): "
                "see `mahavishnu cmd list --device ID`"
            ) from None
        raise CommandRefused(f"cannot read command {command_id}: {exc}") from None
    return from_row(row)


async def find(store: EventStore, command_id: str) -> CommandView:
    """The command `command_id`, folded from the COMMANDS stream and its device's events; CommandRefused if unknown.

    Only a command still in the stream is found: what `cancel` can act on.
    """
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


async def cancel(
    store: EventStore,
    command_id: str,
    *,
    actor: str,
    reason: str = "canceled by an operator",
    site_of: Callable[[str], str] = lambda device_id: "",
) -> None:
    """Cancel a command that its device has not received yet: remove it from the stream, record the cancel.

    `site_of(device_id)` is the JetStream API prefix of the edge site the device belongs to
    ("" for the hub's own devices): its copy there is removed too (ADR 0013). CommandRefused
    when it already reached the device (it is running or done), is unknown, or its site
    cannot say whether its device took it.
    """
    view = await find(store, command_id)
    if view.state is not CommandState.ISSUED:
        raise CommandRefused(
            f"command {command_id} is already {view.state}: only a command not yet received can be canceled"
        )
    too_late = f"command {command_id} was already delivered to {view.device_id}: too late to cancel"
    api = site_of(view.device_id)
    if api:
        await _untaken_at_site(store, api, view.device_id, command_id, too_late)  # before anything is removed
    seq = await store.last_subject_sequence(subjects.command(view.device_id, command_id))
    delivered = await store.delivered_sequence("COMMANDS", subjects.device_consumer(view.device_id))
    if not seq or seq <= delivered or not await store.delete_message("COMMANDS", seq):
        raise CommandRefused(too_late)
    if api:
        # Removed at the hub first, so the site's source cannot copy it (again) after this look.
        copy = await _untaken_at_site(store, api, view.device_id, command_id, too_late)
        if copy is not None:
            try:
                await site_copies.delete_at(store.nc, api, copy.seq)
            except site_copies.SiteSilent as exc:
                raise CommandRefused(f"cannot remove command {command_id} at {view.device_id}'s site: {exc}") from exc
    await store.append(CommandCanceled(command_id=command_id, device_id=view.device_id, actor=actor, reason=reason))
    await store.audit.record(
        actor=actor,
        category="command",
        action="command.cancel",
        target=view.device_id,
        details={"command_id": command_id},
    )


async def _untaken_at_site(
    store: EventStore, api: str, device_id: str, command_id: str, too_late: str
) -> site_copies.Copy | None:
    """The site's copy of the command, None when it has none; CommandRefused when its device took it
    or the site does not answer (its link is down: whether the device took it cannot be told)."""
    try:
        copy = await site_copies.copy_at(store.nc, api, device_id, command_id)
    except site_copies.SiteSilent as exc:
        raise CommandRefused(
            f"cannot tell whether {device_id} took command {command_id}: its site does not answer ({exc}); "
            "try again once the site's link is up"
        ) from exc
    if copy is not None and copy.taken:
        raise CommandRefused(too_late)
    return copy
