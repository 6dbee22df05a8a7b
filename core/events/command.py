"""Commands sent to devices."""

from __future__ import annotations

from typing import Any

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
