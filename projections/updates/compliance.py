"""How far the fleet is with each artifact (pure): latest, pending, failed or outdated, per device.

For every artifact name, "latest" is the newest version not removed (core.updates.versions).
A device counts for a name when it reports a version of it installed or was sent an update
of it, and lands in exactly one of:

    pending    its last update of the name is under way (issued and within its TTL, accepted, running)
    latest     it runs the latest version
    failed     its last update of the name ended without installing (failed, refused, rolled back,
               timed out, rejected, expired, canceled) and it does not run the latest
    outdated   anything else: an older version, no update tried since the latest came
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from core.commands import TERMINAL, CommandState, effective_state
from core.updates.states import COMPLIANCE
from core.updates.versions import latest


@dataclass(frozen=True)
class UpdateSent:
    """The last `update.install` of one artifact name sent to one device, as the commands read model holds it."""

    device_id: str
    name: str
    version: str
    state: CommandState
    issued_at: datetime | None
    ttl_s: float | None
    command_id: str = ""
    detail: str | None = None  # why it ended so, as the device said
    updated_at: str | None = None  # its last step


@dataclass
class Compliance:
    name: str
    latest: str | None
    devices: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COMPLIANCE, 0))

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "latest": self.latest, "devices": self.devices, "total": sum(self.devices.values())}


def status(installed: str | None, sent: UpdateSent | None, newest: str | None, now: datetime) -> str:
    """One device's status for one artifact name (pure)."""
    if sent is not None:
        state = effective_state(sent.state, issued_at=sent.issued_at, ttl_s=sent.ttl_s, now=now)
        if state not in TERMINAL:  # issued within its TTL, accepted or running: under way
            return "pending"
    if installed is not None and installed == newest:
        return "latest"
    if sent is not None and sent.state is not CommandState.SUCCEEDED:
        return "failed"
    return "outdated"


def _issued(update: UpdateSent) -> float:
    return update.issued_at.timestamp() if update.issued_at is not None else float("-inf")


def last_sent(sent: Iterable[UpdateSent]) -> dict[tuple[str, str], UpdateSent]:
    """The last update issued of each (device, artifact name), from `sent` in any order (pure)."""
    last: dict[tuple[str, str], UpdateSent] = {}
    for update in sent:
        key = (update.device_id, update.name)
        held = last.get(key)
        if held is None or _issued(update) >= _issued(held):
            last[key] = update
    return last


def compliance(
    versions: Mapping[str, list[str]],
    installed: Mapping[tuple[str, str], str],
    sent: Iterable[UpdateSent],
    now: datetime,
) -> list[Compliance]:
    """Per artifact name (`versions`: its versions not removed), how many devices are in each status (pure).

    `installed`: (device, name) -> the version it reports; `sent`: every update sent, any order
    (the last one issued of each device and name counts).
    """
    last = last_sent(sent)
    names = sorted(set(versions) | {name for _, name in installed} | {name for _, name in last})
    found = {name: Compliance(name, latest(versions.get(name, []))) for name in names}
    for device, name in installed.keys() | last.keys():
        report = found[name]
        report.devices[status(installed.get((device, name)), last.get((device, name)), report.latest, now)] += 1
    return [found[name] for name in names]
