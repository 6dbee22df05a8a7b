"""Cutting a revoked device off: its live connections are closed by the server that holds them.

The callout refuses a revoked certificate from the moment the CA lists it, but a device
already connected stays connected until told otherwise. On every DeviceRevoked event
this asks every server of the mesh (the system account's PING) for the connections of the
revoked certificates' users and has each server kick them. The serials are checked
against the CA's own revocation list first: a device can publish events on its own
subjects, and a forged revocation must not let it kick other devices.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from certs import certificate_uri
from core import subjects
from core.events import DeviceRevoked, EventDecodeError, decode
from mahavishnu.observability.agents_online import ask_servers

log = logging.getLogger("mahavishnu.identity")

REVOCATIONS = f"{subjects.EVENTS_PREFIX}.device.*.revoked"  # DeviceRevoked.subject() of any device
ANSWER_WINDOW_S = 0.25  # how long the servers of a cluster get to report their connections


async def connections_of(
    system: Client, user: str, *, servers: int, window: float = ANSWER_WINDOW_S
) -> list[tuple[str, int]]:
    """(server id, client id) of every connection of `user`, on every server that answers.

    In any account: a NATS device's connections are in MESH, an MQTT device's in MQTT (the
    user name, the certificate's URI, is unique). A node that does not answer within
    `window` holds no connection we could reach anyway.
    """
    query = json.dumps({"user": user, "limit": 1024}).encode()
    found: list[tuple[str, int]] = []
    for answer in await ask_servers(system, servers=servers, timeout=window, request=query):
        try:
            reply = json.loads(answer)
            server = reply["server"]["id"]
            found.extend((server, int(c["cid"])) for c in (reply.get("data") or {}).get("connections") or [])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable connection list from a server", extra={"user": user})
    return found


async def kick(system: Client, server_id: str, client_id: int) -> None:
    reply = await system.request(
        f"$SYS.REQ.SERVER.{server_id}.KICK", json.dumps({"cid": client_id}).encode(), timeout=2
    )
    error = json.loads(reply.data).get("error")
    if error and error.get("code") != 404:  # already gone: what we wanted
        log.warning("the server did not kick a revoked connection", extra={"client_id": client_id, "error": error})


async def cut_off(system: Client, serials: list[int], *, servers: int) -> int:
    """Kick every live connection of these certificates; how many were kicked."""
    kicked = 0
    for serial in serials:
        for server_id, client_id in await connections_of(system, certificate_uri(serial), servers=servers):
            await kick(system, server_id, client_id)
            kicked += 1
    return kicked


async def follow_revocations(
    nc: Client, system: Client, revoked: Callable[[], frozenset[int]], *, servers: int = 1
) -> Subscription:
    """Cut off the connections of each certificate a DeviceRevoked event names, once the CA lists it as revoked."""

    async def on_revocation(msg: Msg) -> None:
        try:
            event = decode(msg.data)
            if not isinstance(event, DeviceRevoked):
                return
            named = [int(serial, 16) for serial in event.serials]
        except (EventDecodeError, ValueError):
            return  # a malformed event is the projections' to park; it names nothing we could cut
        listed = revoked()
        serials = [serial for serial in named if serial in listed]
        if not serials:
            return
        kicked = await cut_off(system, serials, servers=servers)
        log.info("revoked device cut off", extra={"device": event.device_id, "connections": kicked})

    subscription = await nc.subscribe(REVOCATIONS, cb=on_revocation)
    await nc.flush()
    return subscription
