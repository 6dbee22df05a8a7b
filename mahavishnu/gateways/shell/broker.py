"""The remote terminal's broker in `up`: operators' terminal requests in, a device's PTY session out.

Operators live in the OPS account and may only send requests; the server imports
`mesh.shell.>` from MESH with the requester's identity shared (Nats-Request-Info), so the
broker knows from the connection who asks and through which connection. The parts:

    protocol     the operators' subjects and bodies (open, input, read, resize, close)
    endpoints    those requests answered: who asks, whether they may, refusals as ShellErrors
    table        the live sessions, how one ends, the ticker enforcing the limits
    live         one session: its owner, its clock, its output on the way to the owner
    device_link  the agents' side: control requests, keystrokes, output and ends
    trail        the audit records: openings, refusals, transcripts, endings
    session      the pure rules: who may open, whose connection it is, when it is due to end
    transcript   keystrokes and output as numbered audit records

Refusals come back in the micro error headers (403 role or shell not allowed, 404 no
such session, 409 ended, 503 device offline). Opening needs the admin or operator role;
the session is then bound to the opening connection, and input, reads, resizes and
closes from any other connection are refused and audited. Everything typed and printed
is recorded in the audit trail (category "shell"), batched every FLUSH_S; the opening
is recorded before the operator hears of it, and the closing, with its reason, after
the last output.

The broker enforces the idle timeout, the maximum duration and the owner's presence: the
server's DISCONNECT event for the owner's connection closes the session at once, and
an owner that sends nothing (its reads stop) for owner_silence_s closes it too. Every
PING_S it asks the agent whether the session still exists.

A session does not outlive the broker's process: a clean stop ends every session
(mesh_stopping), and with a journal (in `up`: $MAHAVISHNU_HOME/shell/sessions.json) the
broker started after a crash ends those the crashed one left (broker_restarted); see
mahavishnu.gateways.shell.journal and ADR 0010.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.service import Service

from core.audit import AuditTrail
from mahavishnu.gateways.shell.device_link import DeviceLink
from mahavishnu.gateways.shell.endpoints import Endpoints, Resolver
from mahavishnu.gateways.shell.journal import SessionJournal
from mahavishnu.gateways.shell.live import Live
from mahavishnu.gateways.shell.protocol import POLL_WAIT_S, SERVICE_NAME
from mahavishnu.gateways.shell.session import Limits, disconnected
from mahavishnu.gateways.shell.table import SessionTable
from mahavishnu.gateways.shell.trail import ShellTrail


class ShellBroker:
    """See the module docstring. `start()` registers the service; `stop()` ends every session."""

    def __init__(
        self,
        nc: Client,
        *,
        resolve: Resolver,
        audit: AuditTrail,
        limits: Limits,
        system: Client | None = None,
        version: str = "0.1.0",
        journal: SessionJournal | None = None,
    ) -> None:
        self.nc = nc
        self.system = system
        self.version = version
        self.link = DeviceLink(nc)
        trail = ShellTrail(audit)
        self.table = SessionTable(self.link, trail, limits, journal)
        self.endpoints = Endpoints(resolve=resolve, table=self.table, trail=trail, link=self.link, limits=limits)
        self._service: Service | None = None
        self._disconnects: Any = None
        self._stopped = False

    @property
    def sessions(self) -> dict[str, Live]:
        return self.table.sessions

    async def start(self) -> None:
        self._service = await add_service(
            self.nc, name=SERVICE_NAME, version=self.version, description="Mahavishnu remote terminal broker"
        )
        await self.endpoints.register(self._service)
        await self.link.listen(self.table.device_output, self.table.device_ended)
        if self.system is not None:
            self._disconnects = await self.system.subscribe("$SYS.ACCOUNT.*.DISCONNECT", cb=self._on_disconnect)
        self.table.restore()  # what a crashed broker left open: ended, once its agents' answers can arrive
        self.table.start()

    async def stop(self) -> None:
        """End every session (mesh_stopping), record it, let the waiting readers hear so, and unregister."""
        if self._stopped:
            return
        self._stopped = True
        await self.table.end_all("mesh_stopping", heard_within=2 * POLL_WAIT_S + 1)
        if self._service is not None:
            await self._service.stop()
        await self.link.close()
        if self._disconnects is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._disconnects.unsubscribe()
        await self.table.close()
        await self.endpoints.drain()

    async def _on_disconnect(self, msg: Msg) -> None:
        try:
            gone = disconnected(json.loads(msg.data))
        except ValueError:
            return
        if gone is not None:
            self.table.owner_gone(gone)


async def start_shell_broker(
    nc: Client,
    *,
    resolve: Resolver,
    audit: AuditTrail,
    limits: Limits,
    system: Client | None = None,
    version: str = "0.1.0",
    journal: SessionJournal | None = None,
) -> ShellBroker:
    """A running broker on `nc` (the control identity); `system` (the system identity) for DISCONNECT events;
    `journal` keeps its open sessions on disk, so that the next broker ends them if this one crashes."""
    broker = ShellBroker(
        nc, resolve=resolve, audit=audit, limits=limits, system=system, version=version, journal=journal
    )
    await broker.start()
    return broker
