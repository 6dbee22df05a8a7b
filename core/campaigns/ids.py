"""Ids of campaigns and of the commands their executions send (pure).

A campaign's command id is derived from (campaign, device, attempt): the orchestrator that
resumes after a crash computes the same id, finds the command on its known subject
(mesh.cmd.<device>.<id>), and so never sends one attempt twice. The id also tells a report
about a campaign's command from any other (`campaign_of`), so a device answering a campaign
it was not part of is recognised, ignored and counted.
"""

from __future__ import annotations

import hashlib
import re
import uuid

_CAMPAIGN_ID = re.compile(r"cp-[0-9a-f]{12}")
_COMMAND_ID = re.compile(r"(cp-[0-9a-f]{12})-a(\d+)-[0-9a-f]{12}")


def new_campaign_id() -> str:
    return f"cp-{uuid.uuid4().hex[:12]}"


def is_campaign_id(value: str) -> bool:
    return _CAMPAIGN_ID.fullmatch(value) is not None


def command_id(campaign_id: str, device_id: str, attempt: int) -> str:
    """The id of attempt `attempt` (1, 2, ...) of `device_id`'s execution in `campaign_id`."""
    digest = hashlib.sha256(f"{campaign_id}/{device_id}/{attempt}".encode()).hexdigest()[:12]
    return f"{campaign_id}-a{attempt}-{digest}"


def campaign_of(command: str) -> tuple[str, int] | None:
    """(campaign, attempt) when `command` is a campaign's command id, else None."""
    match = _COMMAND_ID.fullmatch(command)
    return (match.group(1), int(match.group(2))) if match else None


def belongs(command: str, campaign_id: str, device_id: str) -> bool:
    """Whether `command` is really one of `device_id`'s attempts in `campaign_id` (not merely shaped like one)."""
    found = campaign_of(command)
    return found is not None and found[0] == campaign_id and command == command_id(campaign_id, device_id, found[1])
