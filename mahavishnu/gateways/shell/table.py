"""The broker's live sessions: the table, how a session ends, and the ticker that enforces the limits.

A session ends once, for one reason (mahavishnu.gateways.shell.session), through `finish`:
the shell on the device is stopped unless it ended by itself, its last output and exit
status awaited, the transcript flushed, the ending recorded, and only then may its reader
hear of it. Every TICK_S the ticker ends the sessions that are due (idle, too long, owner
silent); every PING_S it asks the agent whether a session is still there; every FLUSH_S it
records what the transcripts gathered. An ended session stays readable KEEP_ENDED_S.

With a journal, the sessions whose opening is recorded and whose ending is not are kept
on disk (mahavishnu.gateways.shell.journal), and `restore()` ends those a crashed broker left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from edge.shell_protocol import ShellControl
from mahavishnu.gateways.shell.device_link import DeviceLink
from mahavishnu.gateways.shell.errors import ShellError
from mahavishnu.gateways.shell.journal import Entry, SessionJournal, entry
from mahavishnu.gateways.shell.live import Live
from mahavishnu.gateways.shell.session import Clock, Connection, Limits, due, same_connection
from mahavishnu.gateways.shell.trail import ShellTrail

log = logging.getLogger("mahavishnu.shell")

DEVICE_END_WAIT_S = 5.0  # after asking the agent to end a session: how long to wait for its last output
FLUSH_S = 0.5
TICK_S = 0.1
PING_S = 5.0
KEEP_ENDED_S = 60.0  # an ended session's last output and reason stay readable this long
RESTORED_REACH_S = 60.0  # how long the broker after a crash tries to reach the agent of a session left open
RESTORED_RETRY_S = 1.0


class SessionTable:
    """The sessions by id; `start()` starts the ticker, `close()` stops it and waits for the endings under way."""

    def __init__(
        self, link: DeviceLink, trail: ShellTrail, limits: Limits, journal: SessionJournal | None = None
    ) -> None:
        self.link = link
        self.trail = trail
        self.limits = limits
        self.journal = journal
        self.sessions: dict[str, Live] = {}
        self._journaled: dict[str, Entry] = {}  # opening recorded, ending not yet: what the journal holds
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="shell-broker-ticker")

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def get(self, session: str) -> Live | None:
        return self.sessions.get(session)

    def add(self, live: Live) -> None:
        self.sessions[live.id] = live

    def drop(self, live: Live) -> None:
        self.sessions.pop(live.id, None)

    def opened(self, live: Live) -> None:
        """Its opening is recorded: keep it in the journal until its ending is."""
        age = time.monotonic() - live.clock.opened
        self._journaled[live.id] = entry(
            session=live.id,
            device=live.device,
            identity=live.identity,
            role=live.role,
            owner=live.owner,
            opened_at=time.time() - age,
        )
        self._write_journal()

    def restore(self) -> list[Live]:
        """End, for broker_restarted, every session the journal holds from a broker that crashed.

        Each is back in the table (so its agent's end message and its owner's next read find
        it), ended in the background: the shell stopped, the ending recorded, the owner told.
        """
        if self.journal is None:
            return []
        restored = []
        now, wall = time.monotonic(), time.time()
        for left in self.journal.load():
            if left.session in self.sessions:
                continue
            clock = Clock(opened=now - max(0.0, wall - left.opened_at), last_input=now, last_seen=now)
            live = Live(
                id=left.session,
                device=left.device,
                identity=left.identity,
                role=left.role,
                owner=left.owner,
                clock=clock,
                last_ping=now,
                restored=True,
            )
            self.add(live)
            self._journaled[live.id] = left
            restored.append(live)
            log.warning(
                "ending a shell session a previous broker left open",
                extra={"session": live.id, "device": live.device, "operator": live.identity},
            )
            self.end(live, "broker_restarted")
        return restored

    def _write_journal(self) -> None:
        if self.journal is None:
            return
        try:
            self.journal.write(self._journaled.values())
        except OSError as exc:  # the session goes on; only a crash's clean ending is at stake
            log.error("the shell session journal cannot be written", extra={"reason": str(exc)})

    def end(self, live: Live, reason: str) -> None:
        """End `live` for `reason` in the background (see `finish`)."""
        self._spawn(self.finish(live, reason))

    async def finish(self, live: Live, reason: str) -> None:
        """End `live` for `reason`: stop the shell (unless it ended by itself), record the rest, tell the reader."""
        if live.ending:
            return
        live.ending = reason
        log.info("shell ending", extra={"session": live.id, "device": live.device, "reason": reason})
        if not live.device_done.is_set():
            await self._ask_to_close(live)
            with contextlib.suppress(TimeoutError):  # its last output and exit status
                await asyncio.wait_for(live.device_done.wait(), DEVICE_END_WAIT_S)
        live.transcript.finish()
        await self.flush(live)
        await self.trail.closed(live, reason)
        if self._journaled.pop(live.id, None) is not None:
            self._write_journal()
        live.ended, live.ended_at = True, time.monotonic()
        live.notify()

    async def _ask_to_close(self, live: Live) -> None:
        """Ask the agent to stop the shell. A session a crashed broker left is asked again while its
        agent is away (it reconnects after the restart, with backoff) for up to RESTORED_REACH_S; after
        that the agent's own idle and maximum limits end the shell."""
        deadline = time.monotonic() + (RESTORED_REACH_S if live.restored else 0.0)
        while True:
            try:
                await self.link.ask(live.device, ShellControl(op="close", session=live.id))
                return
            except ShellError as exc:
                if exc.code != "503" or time.monotonic() >= deadline:
                    return
            await asyncio.sleep(RESTORED_RETRY_S)  # no agent yet: its reconnection is not an event we see

    async def flush(self, live: Live) -> None:
        if not await self.trail.flush(live) and not live.ending:  # a session the trail cannot follow does not go on
            self.end(live, "failed")

    async def end_all(self, reason: str, *, heard_within: float) -> None:
        """End every session for `reason`, then give their owners `heard_within` seconds to read that it ended."""
        await asyncio.gather(
            *(self.finish(live, reason) for live in self.sessions.values() if not live.ending),
            return_exceptions=True,
        )
        listening = [
            live
            for live in self.sessions.values()
            if not live.told.is_set() and live.ending not in ("owner_disconnected", "owner_silent")
        ]
        waiting = [asyncio.create_task(live.told.wait()) for live in listening]
        if waiting:  # each owner's next read hears of the end and its reason, unless it is gone too
            await asyncio.wait(waiting, timeout=heard_within)
            for task in waiting:
                task.cancel()

    # --- what the agents and the server say ------------------------------------

    def device_output(self, device: str, session: str, data: bytes) -> None:
        live = self.sessions.get(session)
        if live is not None and live.device == device and not live.ended:
            live.add_output(data)

    def device_ended(self, device: str, session: str, reason: str, exit_code: int | None) -> None:
        live = self.sessions.get(session)
        if live is None or live.device != device:
            return
        live.exit_code = exit_code
        live.device_done.set()
        if not live.ending:
            self.end(live, reason)

    def owner_gone(self, gone: Connection) -> None:
        for live in list(self.sessions.values()):
            if not live.ending and same_connection(live.owner, gone):
                self.end(live, "owner_disconnected")

    # --- the ticker -----------------------------------------------------------

    async def _tick(self) -> None:
        last_flush = time.monotonic()
        while True:
            await asyncio.sleep(TICK_S)  # the resolution of the limits; the work below is cheap
            try:
                last_flush = self._check(last_flush)
            except Exception:  # a bug: say so, and keep enforcing the limits of the other sessions
                log.exception("checking the shell sessions failed")

    def _check(self, last_flush: float) -> float:
        """End what is due, ping agents, flush transcripts; returns when transcripts were last flushed."""
        now = time.monotonic()
        for live in list(self.sessions.values()):
            if live.ended:
                if now - live.ended_at > KEEP_ENDED_S:
                    self.sessions.pop(live.id, None)
                continue
            if live.ending:
                continue
            reason = due(live.clock, now, self.limits)
            if reason is not None:
                self.end(live, reason)
            elif now - live.last_ping >= PING_S:
                live.last_ping = now
                self._spawn(self._ping(live))
        if now - last_flush >= FLUSH_S:
            last_flush = now
            for live in list(self.sessions.values()):
                if not live.ending and live.transcript.pending():
                    self._spawn(self.flush(live))
        return last_flush

    async def _ping(self, live: Live) -> None:
        try:
            reply = await self.link.ask(live.device, ShellControl(op="ping", session=live.id))
        except ShellError as exc:
            if exc.code == "503":  # no agent: gone (a slow answer is not proof of anything)
                await self.finish(live, "device_lost")
            return
        if reply.ok:
            return
        with contextlib.suppress(TimeoutError):  # it may have just ended, its end message on the way
            await asyncio.wait_for(live.device_done.wait(), 1.0)
        if not live.ending and not live.device_done.is_set():
            await self.finish(live, "device_lost")

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
