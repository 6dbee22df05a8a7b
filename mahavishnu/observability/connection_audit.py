"""Turns the server's own events into audit events: every connection, disconnection and authorization failure.

nats-server publishes them in its system account ($SYS); the control services' system
identity reads them there. Certificate user names (mahavishnu:cert:<serial>) are
translated to the identity they belong to, from the CA registry.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from core.audit import AuditTrail
from core.errors import MahavishnuError

log = logging.getLogger("mahavishnu.audit")

SUBJECTS = ("$SYS.ACCOUNT.*.CONNECT", "$SYS.ACCOUNT.*.DISCONNECT", "$SYS.SERVER.*.CLIENT.AUTH.ERR")


def audit_entry(subject: str, payload: bytes, identify: Callable[[str], str]) -> dict[str, Any] | None:
    """The audit entry (record() arguments) for one system event, None for one we do not audit (pure)."""
    try:
        advisory = json.loads(payload)
    except ValueError:
        return None
    client = advisory.get("client") or {}
    if subject.endswith(".CLIENT.AUTH.ERR"):
        action, outcome = "connection.refused", "denied"
    elif subject.endswith(".CONNECT"):
        action, outcome = "connection.open", "ok"
    elif subject.endswith(".DISCONNECT"):
        action, outcome = "connection.close", "ok"
    else:
        return None
    user = str(client.get("user") or "")
    details = {
        "account": client.get("acc", ""),
        "name": client.get("name", ""),
        "host": client.get("host", ""),
        "reason": advisory.get("reason", ""),
        "user": user,
    }
    return {
        "actor": identify(user) if user else "unknown",
        "category": "connection",
        "action": action,
        "target": str(client.get("acc") or ""),
        "outcome": outcome,
        "details": {k: v for k, v in details.items() if v},
    }


PENDING_LIMIT = 10_000  # records awaiting their append; past it, the subscription waits for the trail


async def follow(system: Client, trail: AuditTrail, identify: Callable[[str], str]) -> list[Any]:
    """Subscribe the system connection to the server's events; returns the subscriptions.

    nats-py hands a subscription's messages to its callback one at a time, so a callback
    that awaited its record would make every connection of a reconnecting fleet wait for
    the append of the one before: one round trip each, in a row. Each record is made in a
    task instead; the trail queues it at once (in arrival order) and appends what queued
    meanwhile together (its group commit).
    """
    pending: set[asyncio.Task[None]] = set()

    async def record(entry: dict[str, Any]) -> None:
        try:
            await trail.record(**entry)
        except MahavishnuError as exc:
            log.error("a connection event could not be audited", extra={"reason": str(exc), **entry})

    async def on_event(msg: Msg) -> None:
        entry = audit_entry(msg.subject, msg.data, identify)
        if entry is None:
            return
        task = asyncio.create_task(record(entry), name="connection-audit")
        pending.add(task)
        task.add_done_callback(pending.discard)
        if len(pending) >= PENDING_LIMIT:  # the trail is not keeping up: hold the next events back
            await asyncio.wait(set(pending), return_when=asyncio.FIRST_COMPLETED)

    return [await system.subscribe(subject, cb=on_event) for subject in SUBJECTS]
