"""The remote terminal in the audit trail (category "shell", actor the operator, target the device).

    shell.open    the opening (session, shell, pid, role, connection), before the operator hears of it;
                  a refusal to open, outcome "denied", with the reason
    shell.<verb>  input, read, resize or close by a connection that does not own the session: "denied"
    shell.input   what was typed, shell.output what was printed (mahavishnu.gateways.shell.transcript)
    shell.close   the ending: reason, exit code, duration, bytes each way; after the last output

An opening that cannot be recorded raises (the session must not go on); a refusal or an
ending that cannot be recorded is logged and happens all the same. `flush` says whether the
transcript could be recorded, so that a session the trail cannot follow is ended.
"""

from __future__ import annotations

import asyncio
import logging
import time

from core.audit import AuditTrail
from core.errors import MahavishnuError
from mahavishnu.gateways.shell.live import Live
from mahavishnu.gateways.shell.session import Connection
from mahavishnu.gateways.shell.transcript import record_entry
from projections.authz import Caller

log = logging.getLogger("mahavishnu.shell")


class ShellTrail:
    """The shell's records, written to `audit`."""

    def __init__(self, audit: AuditTrail) -> None:
        self.audit = audit

    async def opened(self, live: Live) -> None:
        """Record the opening of `live`; MahavishnuError when it could not be recorded."""
        await self.audit.record(
            actor=live.identity,
            category="shell",
            action="shell.open",
            target=live.device,
            details={
                "session": live.id,
                "shell": live.shell,
                "pid": live.pid,
                "role": live.role,
                "connection": str(live.owner),
            },
        )

    async def refused(self, caller: Caller, device: str, shell: str, reason: str) -> None:
        """Record that `caller` was refused a terminal on `device`."""
        log.warning("shell refused", extra={"device": device, "operator": caller.identity, "reason": reason})
        try:
            await self.audit.record(
                actor=caller.identity,
                category="shell",
                action="shell.open",
                target=device,
                outcome="denied",
                details={"role": caller.role, "shell": shell, "reason": reason},
            )
        except MahavishnuError as exc:  # refused all the same
            log.error("a refused shell could not be audited", extra={"reason": str(exc)})

    async def intruded(self, caller: Caller, connection: Connection, live: Live, action: str) -> None:
        """Record that `connection` (of `caller`) tried `action` on a session it does not own."""
        log.warning("shell used by another connection", extra={"session": live.id, "operator": caller.identity})
        try:
            await self.audit.record(
                actor=caller.identity,
                category="shell",
                action=f"shell.{action}",
                target=live.device,
                outcome="denied",
                details={"session": live.id, "connection": str(connection), "owner": live.identity},
            )
        except MahavishnuError as exc:  # refused all the same
            log.error("a refused use of a shell could not be audited", extra={"session": live.id, "reason": str(exc)})

    async def closed(self, live: Live, reason: str) -> None:
        """Record the ending of `live` for `reason`."""
        try:
            await self.audit.record(
                actor=live.identity,
                category="shell",
                action="shell.close",
                target=live.device,
                details={
                    "session": live.id,
                    "reason": reason,
                    "exit_code": live.exit_code,
                    "duration_s": round(time.monotonic() - live.clock.opened, 3),
                    "bytes_in": live.transcript.bytes_in,
                    "bytes_out": live.transcript.bytes_out,
                },
            )
        except MahavishnuError as exc:
            log.error("a shell's end could not be audited", extra={"session": live.id, "reason": str(exc)})

    async def flush(self, live: Live) -> bool:
        """Record what the transcript of `live` gathered since the last flush; False if some of it could not be."""
        async with live.flushing:
            taken = live.transcript.take()
            if not taken:
                return True
            entries = [
                record_entry(actor=live.identity, device=live.device, session=live.id, seq=seq, segment=segment)
                for seq, segment in taken
            ]
            results = await asyncio.gather(*(self.audit.record(**entry) for entry in entries), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.error("a shell transcript could not be audited", extra={"session": live.id, "reason": str(failed[0])})
        return not failed
