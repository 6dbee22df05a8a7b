"""Commands sent to devices, and what becomes of them."""

from __future__ import annotations

from typing import Any, Union

import msgspec

from core import subjects
from core.events.base import Event


class CommandIssued(Event, frozen=True, kw_only=True, tag="command.issued.v1"):
    """An operator asked a device to run a command; appended on the device's command subject."""

    command_id: str
    device_id: str
    name: str
    args: dict[str, Any] = {}
    ttl_s: float = 30.0
    timeout_s: float = 10.0

    def subject(self) -> str:
        return subjects.command(self.device_id, self.command_id)


class CommandEvent(Event, frozen=True, kw_only=True):
    """A step in a command's life, reported by the device on its own event subjects."""

    command_id: str
    device_id: str

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "command")


class CommandAccepted(CommandEvent, frozen=True, kw_only=True, tag="command.accepted.v1"):
    """The device received the command and will run it."""


class CommandRunning(CommandEvent, frozen=True, kw_only=True, tag="command.running.v1"):
    """The device started running the command."""


class CommandSucceeded(CommandEvent, frozen=True, kw_only=True, tag="command.succeeded.v1"):
    """The command ran and succeeded; `result` is its JSON-able output."""

    result: Any = None


class CommandFailed(CommandEvent, frozen=True, kw_only=True, tag="command.failed.v1"):
    """The command ran and failed; `error` says why."""

    error: str


class CommandTimedOut(CommandEvent, frozen=True, kw_only=True, tag="command.timed_out.v1"):
    """The command ran longer than its timeout and was stopped."""

    timeout_s: float


class CommandRejected(CommandEvent, frozen=True, kw_only=True, tag="command.rejected.v1"):
    """The device refused to run the command (unknown name, invalid arguments); `reason` says why."""

    reason: str


class CommandExpired(CommandEvent, frozen=True, kw_only=True, tag="command.expired.v1"):
    """The command's time to live passed before it could run: never run."""


class CommandCanceled(CommandEvent, frozen=True, kw_only=True, tag="command.canceled.v1"):
    """The command was canceled before it ran."""

    reason: str = ""


COMMAND_EVENTS: tuple[type[Event], ...] = (
    CommandIssued,
    CommandAccepted,
    CommandRunning,
    CommandSucceeded,
    CommandFailed,
    CommandTimedOut,
    CommandRejected,
    CommandExpired,
    CommandCanceled,
)
_command_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Union[COMMAND_EVENTS])  # noqa: UP007 (at run time)


def decode_command(payload: bytes) -> Event:
    """What core.events.codec.decode returns for `payload`, with a decoder of this module's events first.

    A device's agent reads commands only, and the codec's decoder knows every event of
    the mesh: the catalog, loaded for it, was 0.3 MB of an idle agent's memory
    (bench/agent_footprint.py). A payload this module's events do not decode (another
    event, an older version to upcast, no event at all) goes to the codec, for the very
    answer or EventDecodeError that `decode` gives.
    """
    try:
        return _command_decoder.decode(payload)
    except msgspec.DecodeError:  # ValidationError is one
        from core.events.codec import decode

        return decode(payload)
