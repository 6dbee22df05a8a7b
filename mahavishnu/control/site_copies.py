"""A command's copy at an edge site, seen from the hub through the site's JetStream API (ADR 0013).

A site's COMMANDS stream sources its devices' commands from the hub's, so canceling one
must remove the site's copy too, or the device runs a command the hub records as canceled.
The hub asks the site at `$JS.<site>.API` across the leaf link; a site that does not
answer cannot say whether its device took the command, so the cancel is refused then.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client

from core import subjects
from core.errors import MahavishnuError

STREAM = "COMMANDS"
ASK_S = 2.0  # a site across a live link answers in milliseconds


class SiteSilent(MahavishnuError):
    """The site did not answer, or refused: whether its device took the command cannot be told."""


@dataclass(frozen=True)
class Copy:
    """The command's message in the site's COMMANDS stream, and how far the device's consumer there got."""

    seq: int
    delivered: int

    @property
    def taken(self) -> bool:
        return self.seq <= self.delivered


async def _ask(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        reply = await nc.request(subject, json.dumps(body).encode(), timeout=ASK_S)
    except (TimeoutError, nats.errors.Error) as exc:
        raise SiteSilent(f"no answer to {subject} ({type(exc).__name__})") from exc
    return dict(json.loads(reply.data))


async def copy_at(nc: Client, api: str, device_id: str, command_id: str) -> Copy | None:
    """The site's copy of the command (its API prefix `api`), None when the site holds none. SiteSilent otherwise."""
    got = await _ask(nc, f"{api}.STREAM.MSG.GET.{STREAM}", {"last_by_subj": subjects.command(device_id, command_id)})
    error = got.get("error")
    if error and error.get("code") == 404:
        return None
    if error:
        raise SiteSilent(str(error.get("description")))
    consumer = await _ask(nc, f"{api}.CONSUMER.INFO.{STREAM}.{subjects.device_consumer(device_id)}", {})
    if "error" in consumer:
        raise SiteSilent(str(consumer["error"].get("description")))
    return Copy(int(got["message"]["seq"]), int(consumer.get("delivered", {}).get("stream_seq", 0)))


async def delete_at(nc: Client, api: str, seq: int) -> None:
    """Remove message `seq` from the site's COMMANDS. SiteSilent when the site does not."""
    reply = await _ask(nc, f"{api}.STREAM.MSG.DELETE.{STREAM}", {"seq": seq, "no_erase": True})
    if not reply.get("success"):
        raise SiteSilent(str((reply.get("error") or {}).get("description", "not deleted")))
