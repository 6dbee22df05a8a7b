"""Every update a device refused, audited: a truncated, tampered, stranger-signed or expired artifact is
an attack or a fault someone must see, not only a failed command.

A device cannot write the audit trail (its permissions end at its own event subjects), so
`up` follows the devices' command reports on a durable consumer of its own and records each
`update.install` a device refused (a CommandFailed whose error starts "update refused (")
as an `update.refused` audit entry with the device as actor and the refusal's word. The
consumer starts with the reports that come after it was first made, and acknowledges a
report once its entry is stored, so a refusal reported while `up` is down is audited after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import Any

import nats.errors
import nats.js.errors

from core.events import CommandFailed, Event, EventDecodeError, decode
from core.store import EventStore
from core.subjects import COMMAND_REPORTS

log = logging.getLogger("mahavishnu.updates")

CONSUMER = "update-refusals"
STREAM = "EVENTS"
REPORTS = COMMAND_REPORTS
FETCH = 200
FETCH_WAIT_S = 1.0
# edge.updates.errors.UpdateRefused's message: "update refused (<refusal>): <reason>"
_REFUSED = re.compile(r"^update refused \((?P<refusal>[a-z_]+)\): ")


def consumer_config() -> dict[str, object]:
    return {
        "filter_subject": REPORTS,
        "deliver_policy": "new",
        "ack_policy": "explicit",
        "ack_wait": int(30 * 1e9),
        "max_ack_pending": 10_000,
    }


def refusal_entry(event: Event) -> dict[str, Any] | None:
    """The audit entry (AuditTrail.record's arguments) of a refused update, None for any other report (pure)."""
    if not isinstance(event, CommandFailed):
        return None
    found = _REFUSED.match(event.error)
    if found is None:
        return None
    return {
        "actor": event.device_id,
        "category": "update",
        "action": "update.refused",
        "target": event.device_id,
        "outcome": "denied",
        "details": {"command_id": event.command_id, "refusal": found["refusal"], "reason": event.error},
    }


async def follow(store: EventStore, stop: asyncio.Event) -> None:
    """Audit every refusal reported from now until `stop` is set."""
    await store.ensure_durable(STREAM, CONSUMER, consumer_config())
    subscription = await store.js.pull_subscribe_bind(durable=CONSUMER, stream=STREAM)
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(FETCH, timeout=FETCH_WAIT_S)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("fetching command reports failed", extra={"reason": str(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), FETCH_WAIT_S)
                continue
            for message in messages:
                await _audit(store, message)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()


async def _audit(store: EventStore, message: Any) -> None:
    try:
        entry = refusal_entry(decode(message.data))
    except EventDecodeError:
        entry = None  # not ours to park: the read models park what does not decode
    if entry is not None:
        await store.audit.record(**entry)
        log.warning("a device refused an update", extra={k: entry["details"][k] for k in ("command_id", "refusal")})
    with contextlib.suppress(nats.errors.Error):
        await message.ack()
