"""The agent's side of the remote terminal: shells in PTYs, opened only by the control side.

`ShellHost` subscribes to the device's own control subject and session input subjects
(edge.shell_protocol). The server lets only the control identity publish there, so
whoever reaches this code was let through by the control side's broker, which checked
the operator's role and binds the session to one connection. The device still decides
what runs: only an exact path from `shell_allowlist` in agent.toml (empty: no shells),
at most MAX_SESSIONS at once.

Each session streams what its terminal prints, in order, on its output subject, and
says once why it ended on its end subject. The broker enforces the idle timeout and
the maximum duration; the agent enforces both too, GRACE_S later, so that a shell
never outlives a control side that went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from edge.shell_protocol import (
    EndReason,
    ShellControl,
    ShellEnded,
    ShellReply,
    control_decoder,
    control_subject,
    encode,
    end_subject,
    output_subject,
    parse_session_subject,
    pick_shell,
    valid_session,
)

if TYPE_CHECKING:
    from edge.pty_shell import PtyShell

log = logging.getLogger("mahavishnu.agent.shell")

MAX_SESSIONS = 4
GRACE_S = 5.0  # the agent's own limits trail the broker's by this much, so the broker's reason is the one shown
_CHUNK = 64 * 1024


@dataclass
class _Session:
    id: str
    control: ShellControl
    started: float
    last_input: float
    shell: PtyShell | None = None
    output: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    closing: asyncio.Future[EndReason] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    task: asyncio.Task[None] | None = None
    grace_s: float = GRACE_S

    def deadline(self) -> tuple[float, EndReason]:
        """When the agent ends this session by itself, and why."""
        idle = self.last_input + self.control.idle_s + self.grace_s
        most = self.started + self.control.max_s + self.grace_s
        return (idle, "idle_timeout") if idle < most else (most, "max_duration")


class ShellHost:
    """Serves shell sessions for one device on `nc`; `start()` subscribes, `stop()` ends every session."""

    def __init__(
        self,
        nc: Client,
        device_id: str,
        allowlist: tuple[str, ...],
        *,
        max_sessions: int = MAX_SESSIONS,
        grace_s: float = GRACE_S,
    ) -> None:
        self.nc = nc
        self.device_id = device_id
        self.allowlist = allowlist
        self.max_sessions = max_sessions
        self.grace_s = grace_s
        self.sessions: dict[str, _Session] = {}
        self._subscriptions: list[Any] = []

    async def start(self) -> None:
        self._subscriptions = [
            await self.nc.subscribe(control_subject(self.device_id), cb=self._on_control),
            await self.nc.subscribe(f"mesh.pty.in.{self.device_id}.*", cb=self._on_input),
        ]
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await self.nc.flush(timeout=5)  # the server knows the subscriptions: a request from now on finds them

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        for session in list(self.sessions.values()):
            _close(session, "agent_stopped")
        tasks = [s.task for s in self.sessions.values() if s.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- control ---------------------------------------------------------------

    async def _on_control(self, msg: Msg) -> None:
        try:
            control = control_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            reply = ShellReply(ok=False, error=f"malformed shell request: {exc}")
        else:
            reply = await self.handle(control)
        if msg.reply:
            with contextlib.suppress(nats.errors.Error):
                await msg.respond(encode(reply))

    async def handle(self, control: ShellControl) -> ShellReply:
        """Carry out one control request; the reply says whether it was done, or why not."""
        if not valid_session(control.session):
            return ShellReply(ok=False, error="a session id is 32 lowercase hex digits")
        session = self.sessions.get(control.session)
        if control.op == "open":
            return await self._open(control)
        if session is None:
            return ShellReply(ok=False, error=f"no session {control.session} on {self.device_id}")
        if control.op == "close":
            _close(session, "closed")
        elif control.op == "resize" and session.shell is not None:
            session.shell.resize(control.rows, control.cols)
        return ShellReply(ok=True, shell=session.control.shell, pid=session.shell.pid if session.shell else 0)

    async def _open(self, control: ShellControl) -> ShellReply:
        if control.session in self.sessions:
            return ShellReply(ok=False, error=f"session {control.session} is open already")
        if len(self.sessions) >= self.max_sessions:
            return ShellReply(
                ok=False, error=f"{self.device_id} runs {len(self.sessions)} shells already: close one first"
            )
        try:
            path = pick_shell(control.shell, self.allowlist)
        except ValueError as exc:
            log.warning("shell refused", extra={"device": self.device_id, "shell": control.shell, "reason": str(exc)})
            return ShellReply(ok=False, error=str(exc))
        now = time.monotonic()
        session = _Session(
            control.session, msgspec.structs.replace(control, shell=path), now, now, grace_s=self.grace_s
        )
        from edge.pty_shell import PtyShell  # pty, tty, termios: loaded by the first shell, not by every agent

        try:
            session.shell = await PtyShell.start(
                path, rows=control.rows, cols=control.cols, term=control.term, on_output=session.output.put_nowait
            )
        except OSError as exc:
            return ShellReply(ok=False, error=f"cannot start {path} on {self.device_id}: {exc.strerror or exc}")
        self.sessions[session.id] = session
        session.task = asyncio.create_task(self._run(session), name=f"shell-{session.id}")
        log.info("shell opened", extra={"device": self.device_id, "session": session.id, "shell": path})
        return ShellReply(ok=True, shell=path, pid=session.shell.pid)

    # --- a session -----------------------------------------------------------

    async def _on_input(self, msg: Msg) -> None:
        parsed = parse_session_subject(msg.subject)
        session = self.sessions.get(parsed[2]) if parsed else None
        if session is None or session.shell is None:
            return  # ended meanwhile: the broker hears so from the end subject
        session.last_input = time.monotonic()
        session.shell.write(msg.data)

    async def _run(self, session: _Session) -> None:
        assert session.shell is not None
        shell = session.shell
        publishing = asyncio.create_task(self._publish_output(session))
        exited = asyncio.create_task(shell.wait())
        reason: EndReason = "exited"
        code: int | None = None
        try:
            while True:
                at, why = session.deadline()
                waiting: set[asyncio.Future[Any]] = {exited, session.closing}
                done, _ = await asyncio.wait(
                    waiting, timeout=max(0.0, at - time.monotonic()), return_when="FIRST_COMPLETED"
                )
                if exited in done:
                    code = exited.result()
                    break
                if session.closing.done():
                    reason = session.closing.result()
                    break
                if time.monotonic() >= session.deadline()[0]:
                    reason = why
                    break
            if reason != "exited":
                exited.cancel()
                code = await shell.end()
        except Exception:
            log.exception("shell session failed", extra={"device": self.device_id, "session": session.id})
            reason = "failed"
            with contextlib.suppress(Exception):
                code = await shell.end()
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(publishing, 5)
            self.sessions.pop(session.id, None)
            ended = ShellEnded(reason=reason, exit_code=code)
            with contextlib.suppress(nats.errors.Error):
                await self.nc.publish(end_subject(self.device_id, session.id), encode(ended))
            log.info(
                "shell ended",
                extra={"device": self.device_id, "session": session.id, "reason": reason, "exit_code": code},
            )

    async def _publish_output(self, session: _Session) -> None:
        """Send what the terminal printed, in order, coalescing what queued up meanwhile; ends at b""."""
        subject = output_subject(self.device_id, session.id)
        while True:
            chunk = await session.output.get()
            ended = not chunk
            while not ended and not session.output.empty() and len(chunk) < _CHUNK:
                more = session.output.get_nowait()
                ended = not more
                chunk += more
            if chunk:
                with contextlib.suppress(nats.errors.Error):
                    await self.nc.publish(subject, chunk)
            if ended:
                return


def _close(session: _Session, reason: EndReason) -> None:
    if not session.closing.done():
        session.closing.set_result(reason)
