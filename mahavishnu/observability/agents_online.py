"""How many devices are connected: the mahavishnu_agents_connected gauge.

Asked of the servers rather than counted from connect and disconnect events: a server
that crashed sends no disconnects for its clients, and a count built from events would
drift for ever after. Every SAMPLE_S seconds the control services' system identity asks
every server for the MESH account's connections ($SYS.REQ.SERVER.PING.CONNZ, answered
once per server of a cluster) and counts the distinct devices among their users.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping

from nats.aio.client import Client
from nats.aio.msg import Msg

from core.metrics import CommandMetrics

log = logging.getLogger("mahavishnu.agents_online")

SAMPLE_S = 10.0
# At most one sample this often: a CONNZ lists every connection of the account, so one per
# connection change cost the server more than the changes themselves while a fleet
# enrols or reconnects (a tenth of its CPU at 60 enrolments a second).
MIN_GAP_S = 1.0
CONNZ = "$SYS.REQ.SERVER.PING.CONNZ"
CHANGES = ("CONNECT", "DISCONNECT")
# Devices live in the MESH account (nats/server.conf.tmpl); `auth` adds each connection's user.
CONNZ_REQUEST = json.dumps({"acc": "MESH", "auth": True, "limit": 100_000}).encode()


def connected_devices(answers: Iterable[bytes], device_of: Mapping[str, str]) -> set[str]:
    """The devices with an open connection, from the servers' CONNZ answers (pure).

    `device_of` maps a certificate user name (mahavishnu:cert:<serial>) to its device id;
    any other user (control, operators) is not a device. An answer that is not JSON is skipped.
    """
    devices: set[str] = set()
    for answer in answers:
        try:
            connections = json.loads(answer).get("data", {}).get("connections") or []
        except (ValueError, AttributeError):
            continue
        for connection in connections:
            device = device_of.get(str(connection.get("authorized_user", "")))
            if device is not None:
                devices.add(device)
    return devices


async def ask_servers(
    system: Client, *, servers: int, timeout: float = 2.0, request: bytes = CONNZ_REQUEST, subject: str = CONNZ
) -> list[bytes]:
    """Every server's answer to `request` on `subject` (CONNZ): returns after `servers` answers, or at
    `timeout` with those that came.

    (The identity service asks it too, for the connections of a revoked certificate, and
    `site remove` for a removed site's leaf links, on LEAFZ.)
    """
    answers: list[bytes] = []
    enough = asyncio.Event()

    async def on_answer(msg: Msg) -> None:
        answers.append(msg.data)
        if len(answers) >= servers:
            enough.set()

    inbox = system.new_inbox()
    subscription = await system.subscribe(inbox, cb=on_answer)
    try:
        await system.publish(subject, request, reply=inbox)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), timeout)
    finally:
        await subscription.unsubscribe()
    return answers


async def follow(
    system: Client,
    metrics: CommandMetrics,
    device_of: Callable[[], Mapping[str, str]],
    stop: asyncio.Event,
    *,
    servers: int = 1,
    every: float = SAMPLE_S,
    min_gap: float = MIN_GAP_S,
) -> None:
    """Keep the gauge current until `stop` is set; a failed sample is logged and the last value kept.

    A connection opening or closing in the MESH account samples again, `min_gap` after the
    last sample at the soonest, so the gauge follows the fleet within a second rather than
    within `every` seconds, and a storm of changes costs one sample a second.
    """
    changed = asyncio.Event()

    async def on_change(_: Msg) -> None:
        changed.set()

    watching = [await system.subscribe(f"$SYS.ACCOUNT.MESH.{what}", cb=on_change) for what in CHANGES]
    try:
        while not stop.is_set():
            changed.clear()
            try:
                answers = await ask_servers(system, servers=servers)
                metrics.agents_connected.set(len(connected_devices(answers, device_of())))
            except Exception as exc:  # a sample is best effort; the next one may work
                log.warning("connected agents not sampled", extra={"reason": str(exc)})
            await _first_of(stop, changed, timeout=every)
            if changed.is_set() and not stop.is_set():
                await _first_of(stop, timeout=min_gap)  # the changes of the next moment share one sample
    finally:
        for subscription in watching:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
