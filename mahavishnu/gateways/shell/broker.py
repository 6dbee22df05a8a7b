"""The remote terminal's broker in `up`: operators' terminal requests in, a device's PTY session out.

Operators live in the OPS account and may only send requests; the server imports
`mesh.shell.>` from MESH with the requester's identity shared (Nats-Request-Info), so the
broker knows from the connection who asks and through which connection:

    mesh.shell.open             {"device", "shell", "rows", "cols", "term"} -> Opened
    mesh.shell.input.<session>  keystrokes (raw bytes)                      -> empty
    mesh.shell.read.<session>   {"after": offset}                           -> Output (waits up to POLL_WAIT_S)
    mesh.shell.resize.<session> {"rows", "cols"}                            -> empty
    mesh.shell.close.<session>  empty                                       -> empty

Refusals come back in the micro error headers (403 role or shell not allowed, 404 no
such session, 409 ended, 503 device offline). Opening needs the admin or operator role;
the session is then bound to the opening connection (mahavishnu.gateways.shell.session), and
input, reads, resizes and closes from any other connection are refused and audited.
Everything typed and printed is recorded in the audit trail (category "shell"), batched
every FLUSH_S (mahavishnu.gateways.shell.transcript); the opening is recorded before the
operator hears of it, and the closing, with its reason, after the last output.

The broker enforces the idle timeout, the maximum duration and the owner's presence: the
server's DISCONNECT event for the owner's connection closes the session at once, and
an owner that sends nothing (its reads stop) for owner_silence_s closes it too. Every
PING_S it asks the agent whether the session still exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.micro import add_service
from nats.micro.request import Request, ServiceError
from nats.micro.service import Service

from core import subjects
from core.audit import AuditTrail
from core.errors import MahavishnuError
from core.requester import RequestInfoError, requester_of
from edge.shell_protocol import (
    ShellControl,
    control_subject,
    encode,
    ended_decoder,
    input_subject,
    parse_session_subject,
    reply_decoder,
    valid_session,
)
from mahavishnu.gateways.shell.errors import ShellError
from mahavishnu.gateways.shell.session import (
    Clock,
    Connection,
    Limits,
    connection_of,
    disconnected,
    due,
    explain,
    may_open,
    refusal_for_role,
    same_connection,
)
from mahavishnu.gateways.shell.transcript import Transcript, record_entry
from projections.authz import Caller

log = logging.getLogger("mahavishnu.shell")

SERVICE_NAME = "mahavishnu-shell"
PREFIX = "mesh.shell"
POLL_WAIT_S = 1.0  # a read waits this long for output before answering empty
OPEN_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 5.0
DEVICE_END_WAIT_S = 5.0  # after asking the agent to end a session: how long to wait for its last output
FLUSH_S = 0.5
TICK_S = 0.1
PING_S = 5.0
KEEP_ENDED_S = 60.0  # an ended session's last output and reason stay readable this long
BUFFER_CAP = 1024 * 1024  # output not yet read by the owner; beyond it the oldest is dropped (never from the trail)
READ_MAX = 64 * 1024
INPUT_MAX = 64 * 1024
MAX_IN_FLIGHT = 64

Resolver = Callable[[str], Caller | None]
DEVICE_REASONS = {"agent_stopped": "device_lost", "idle_timeout": "idle_timeout", "max_duration": "max_duration"}


class OpenRequest(msgspec.Struct, frozen=True, kw_only=True):
    device: str
    shell: str = ""
    rows: int = 24
    cols: int = 80
    term: str = "xterm"


class Opened(msgspec.Struct, frozen=True, kw_only=True):
    session: str
    device: str
    shell: str
    idle_timeout_s: float
    max_duration_s: float


class ReadRequest(msgspec.Struct, frozen=True, kw_only=True):
    after: int = 0


class Output(msgspec.Struct, frozen=True, kw_only=True):
    """Output from `offset` on; `ended` once the session is over and everything it printed was read."""

    offset: int
    data: bytes = b""
    ended: bool = False
    reason: str = ""
    message: str = ""
    exit_code: int | None = None


class Resize(msgspec.Struct, frozen=True, kw_only=True):
    rows: int
    cols: int


@dataclass
class Live:
    """One session as the broker holds it."""

    id: str
    device: str
    identity: str
    role: str
    owner: Connection
    clock: Clock
    shell: str = ""
    pid: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    base: int = 0  # stream offset of buffer[0]
    transcript: Transcript = field(default_factory=Transcript)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    device_done: asyncio.Event = field(default_factory=asyncio.Event)
    told: asyncio.Event = field(default_factory=asyncio.Event)  # a read answered with the end
    flushing: asyncio.Lock = field(default_factory=asyncio.Lock)
    ending: str = ""  # why it is ending (input refused from then on)
    ended: bool = False  # ended and recorded: readers may hear so
    ended_at: float = 0.0
    exit_code: int | None = None
    last_ping: float = 0.0

    @property
    def end(self) -> int:
        return self.base + len(self.buffer)

    def add_output(self, data: bytes) -> None:
        self.transcript.add("output", data)
        self.buffer += data
        if len(self.buffer) > BUFFER_CAP:
            dropped = len(self.buffer) - BUFFER_CAP
            del self.buffer[:dropped]
            self.base += dropped
        self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def touch(self, now: float, *, typed: bool = False) -> None:
        self.clock = Clock(opened=self.clock.opened, last_input=now if typed else self.clock.last_input, last_seen=now)


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
    ) -> None:
        self.nc = nc
        self.resolve = resolve
        self.audit = audit
        self.limits = limits
        self.system = system
        self.version = version
        self.sessions: dict[str, Live] = {}
        self._service: Service | None = None
        self._subscriptions: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._ticker: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        service = self._service = await add_service(
            self.nc, name=SERVICE_NAME, version=self.version, description="Mahavishnu remote terminal broker"
        )
        endpoints: list[tuple[str, str, Callable[[Request], Coroutine[Any, Any, None]], bool]] = [
            ("open", f"{PREFIX}.open", self._open, True),
            ("input", f"{PREFIX}.input.*", self._input, False),  # in order, inline: keystrokes must not overtake
            ("read", f"{PREFIX}.read.*", self._read, True),
            ("resize", f"{PREFIX}.resize.*", self._resize, False),
            ("close", f"{PREFIX}.close.*", self._close, True),
        ]
        for name, subject, handler, concurrent in endpoints:
            await service.add_endpoint(name=name, subject=subject, handler=self._endpoint(name, handler, concurrent))
        self._subscriptions = [
            await self.nc.subscribe("mesh.pty.out.*.*", cb=self._on_output),
            await self.nc.subscribe("mesh.pty.end.*.*", cb=self._on_end),
        ]
        if self.system is not None:
            self._subscriptions.append(await self.system.subscribe("$SYS.ACCOUNT.*.DISCONNECT", cb=self._on_disconnect))
        self._ticker = asyncio.create_task(self._tick(), name="shell-broker-ticker")

    async def stop(self) -> None:
        """End every session (mesh_stopping), record it, let the waiting readers hear so, and unregister."""
        if self._stopped:
            return
        self._stopped = True
        await asyncio.gather(
            *(self._finish(live, "mesh_stopping") for live in self.sessions.values() if not live.ending),
            return_exceptions=True,
        )
        listening = [
            live
            for live in self.sessions.values()
            if not live.told.is_set() and live.ending not in ("owner_disconnected", "owner_silent")
        ]
        waiting = [asyncio.create_task(live.told.wait()) for live in listening]
        if waiting:  # each owner's next read hears of the end and its reason, unless it is gone too
            await asyncio.wait(waiting, timeout=2 * POLL_WAIT_S + 1)
            for task in waiting:
                task.cancel()
        if self._service is not None:
            await self._service.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        for subscription in self._subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- requests ------------------------------------------------------------

    def _endpoint(
        self, name: str, handler: Callable[[Request], Coroutine[Any, Any, None]], concurrent: bool
    ) -> Callable[[Request], Coroutine[Any, Any, None]]:
        """`handler` as micro calls it: a ShellError it raises is answered by micro with its code and description.

        A concurrent endpoint's request is answered in a task of its own (at most
        MAX_IN_FLIGHT at once), where micro no longer sees what the handler raises; there
        the error is answered the way micro answers it.
        """

        async def handle(request: Request) -> None:
            try:
                await handler(request)
            except ServiceError:
                raise
            except Exception as exc:  # a bug: answer without details, log the cause
                log.exception("shell request failed", extra={"endpoint": name})
                raise ShellError(500, f"internal error in shell {name}: {type(exc).__name__}") from exc

        async def apart(request: Request) -> None:
            try:
                await handle(request)
            except ServiceError as exc:
                with contextlib.suppress(nats.errors.Error, ValueError):  # gone by now, or sent no reply subject
                    await request.respond_error(exc.code, exc.description)

        async def dispatch(request: Request) -> None:
            await self._slots.acquire()
            self._spawn(apart(request)).add_done_callback(lambda _: self._slots.release())

        return dispatch if concurrent else handle

    def _caller(self, request: Request) -> tuple[Caller, Connection]:
        try:
            requester = requester_of(request.headers)
        except RequestInfoError:
            raise ShellError(
                403, "the remote terminal is for operators: connect with an operator's certificate (shell --as NAME)"
            ) from None
        caller = self.resolve(requester.user) if requester.user else None
        if caller is None:
            raise ShellError(403, "this certificate is not a live operator's with a role: ask an admin for one")
        return caller, connection_of(requester)

    async def _open(self, request: Request) -> None:
        caller, connection = self._caller(request)
        try:
            wanted = msgspec.json.decode(request.data or b"{}", type=OpenRequest)
            subjects.token(wanted.device, what="device id")
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            raise ShellError(400, f'bad open request ({exc}): send {{"device": "<id>", "shell": "/bin/sh"}}') from None
        if not may_open(caller.role):
            refusal = refusal_for_role(caller.identity, caller.role)
            await self._refused(caller, wanted, str(refusal))
            raise refusal
        now = time.monotonic()
        live = Live(
            id=uuid.uuid4().hex,
            device=wanted.device,
            identity=caller.identity,
            role=caller.role,
            owner=connection,
            clock=Clock(opened=now, last_input=now, last_seen=now),
            last_ping=now,
        )
        self.sessions[live.id] = live  # before the agent starts the shell: its first output must find the session
        try:
            reply = await self._ask_device(
                live,
                ShellControl(
                    op="open",
                    session=live.id,
                    shell=wanted.shell,
                    rows=wanted.rows,
                    cols=wanted.cols,
                    term=wanted.term,
                    idle_s=self.limits.idle_s,
                    max_s=self.limits.max_s,
                ),
                OPEN_TIMEOUT_S,
            )
        except ShellError as exc:
            self.sessions.pop(live.id, None)
            await self._refused(caller, wanted, str(exc))
            raise
        if not reply.ok:
            self.sessions.pop(live.id, None)
            await self._refused(caller, wanted, reply.error)
            raise ShellError(403, f"{wanted.device} refused: {reply.error}")
        live.shell, live.pid = reply.shell, reply.pid
        try:
            await self.audit.record(
                actor=caller.identity,
                category="shell",
                action="shell.open",
                target=live.device,
                details={
                    "session": live.id,
                    "shell": live.shell,
                    "pid": live.pid,
                    "role": caller.role,
                    "connection": str(connection),
                },
            )
        except MahavishnuError as exc:
            self._spawn(self._finish(live, "failed"))
            raise ShellError(503, f"the session could not be audited, so it was not opened: {exc}") from exc
        log.info(
            "shell opened",
            extra={"session": live.id, "device": live.device, "operator": caller.identity, "shell": live.shell},
        )
        opened = Opened(
            session=live.id,
            device=live.device,
            shell=live.shell,
            idle_timeout_s=self.limits.idle_s,
            max_duration_s=self.limits.max_s,
        )
        await request.respond(msgspec.json.encode(opened))

    async def _refused(self, caller: Caller, wanted: OpenRequest, reason: str) -> None:
        log.warning("shell refused", extra={"device": wanted.device, "operator": caller.identity, "reason": reason})
        try:
            await self.audit.record(
                actor=caller.identity,
                category="shell",
                action="shell.open",
                target=wanted.device,
                outcome="denied",
                details={"role": caller.role, "shell": wanted.shell, "reason": reason},
            )
        except MahavishnuError as exc:  # refused all the same
            log.error("a refused shell could not be audited", extra={"reason": str(exc)})

    async def _owned(self, request: Request, action: str) -> Live:
        """The session of the request's subject, if the request came through the connection that opened it."""
        caller, connection = self._caller(request)
        session = request.subject.rsplit(".", 1)[-1]
        live = self.sessions.get(session) if valid_session(session) else None
        if live is None:
            raise ShellError(404, f"no session {session}: it ended long ago or never existed; open a new one")
        if not same_connection(live.owner, connection):
            log.warning("shell used by another connection", extra={"session": session, "operator": caller.identity})
            with contextlib.suppress(MahavishnuError):
                await self.audit.record(
                    actor=caller.identity,
                    category="shell",
                    action=f"shell.{action}",
                    target=live.device,
                    outcome="denied",
                    details={"session": session, "connection": str(connection), "owner": live.identity},
                )
            raise ShellError(
                403,
                f"session {session} belongs to the connection that opened it: open your own with `mahavishnu shell`",
            )
        live.touch(time.monotonic())
        return live

    async def _input(self, request: Request) -> None:
        live = await self._owned(request, "input")
        if live.ending:
            raise ShellError(409, f"the session has ended: {explain(live.ending, self.limits, live.exit_code)}")
        data = request.data[:INPUT_MAX]
        live.touch(time.monotonic(), typed=True)
        live.transcript.add("input", data)
        await self.nc.publish(input_subject(live.device, live.id), data)
        await request.respond(b"")

    async def _read(self, request: Request) -> None:
        live = await self._owned(request, "read")
        try:
            after = msgspec.json.decode(request.data or b"{}", type=ReadRequest).after
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ShellError(400, f'bad read request ({exc}): send {{"after": <offset>}}') from None
        if after > live.base:  # what the owner has read may go
            drop = min(after, live.end) - live.base
            del live.buffer[:drop]
            live.base += drop
        deadline = time.monotonic() + POLL_WAIT_S
        while live.end <= after and not live.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.changed.wait(), remaining)
        start = max(after, live.base)
        data = bytes(live.buffer[start - live.base : start - live.base + READ_MAX])
        finished = live.ended and start + len(data) >= live.end
        output = Output(
            offset=start,
            data=data,
            ended=finished,
            reason=live.ending if finished else "",
            message=explain(live.ending, self.limits, live.exit_code) if finished else "",
            exit_code=live.exit_code if finished else None,
        )
        await request.respond(msgspec.json.encode(output))
        if finished:
            live.told.set()

    async def _resize(self, request: Request) -> None:
        live = await self._owned(request, "resize")
        try:
            size = msgspec.json.decode(request.data, type=Resize)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ShellError(400, f'bad resize request ({exc}): send {{"rows": 24, "cols": 80}}') from None
        if not live.ending:
            with contextlib.suppress(ShellError):
                await self._ask_device(
                    live, ShellControl(op="resize", session=live.id, rows=size.rows, cols=size.cols), CONTROL_TIMEOUT_S
                )
        await request.respond(b"")

    async def _close(self, request: Request) -> None:
        live = await self._owned(request, "close")
        if not live.ending:
            await self._finish(live, "closed")
        await request.respond(b"")

    # --- the device's side ---------------------------------------------------

    async def _ask_device(self, live: Live, control: ShellControl, timeout: float) -> Any:
        try:
            msg = await self.nc.request(control_subject(live.device), encode(control), timeout=timeout)
        except nats.errors.NoRespondersError:
            raise ShellError(
                503, f"device {live.device} is offline: no agent of it is connected; start its agent and try again"
            ) from None
        except (nats.errors.TimeoutError, TimeoutError):
            raise ShellError(504, f"device {live.device} did not answer within {timeout:g} s; try again") from None
        try:
            return reply_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise ShellError(502, f"device {live.device} answered nonsense: {exc}") from None

    async def _on_output(self, msg: Msg) -> None:
        parsed = parse_session_subject(msg.subject)
        live = self.sessions.get(parsed[2]) if parsed else None
        if live is None or parsed is None or parsed[1] != live.device or live.ended:
            return
        live.add_output(msg.data)

    async def _on_end(self, msg: Msg) -> None:
        parsed = parse_session_subject(msg.subject)
        live = self.sessions.get(parsed[2]) if parsed else None
        if live is None or parsed is None or parsed[1] != live.device:
            return
        try:
            ended = ended_decoder.decode(msg.data)
        except msgspec.DecodeError:
            return
        live.exit_code = ended.exit_code
        live.device_done.set()
        if not live.ending:
            self._spawn(self._finish(live, DEVICE_REASONS.get(ended.reason, ended.reason)))

    async def _on_disconnect(self, msg: Msg) -> None:
        try:
            gone = disconnected(json.loads(msg.data))
        except ValueError:
            return
        if gone is None:
            return
        for live in list(self.sessions.values()):
            if not live.ending and same_connection(live.owner, gone):
                self._spawn(self._finish(live, "owner_disconnected"))

    # --- ending, limits, the trail -------------------------------------------

    async def _finish(self, live: Live, reason: str) -> None:
        """End `live` for `reason`: stop the shell (unless it ended by itself), record the rest, tell the reader."""
        if live.ending:
            return
        live.ending = reason
        log.info("shell ending", extra={"session": live.id, "device": live.device, "reason": reason})
        if not live.device_done.is_set():
            with contextlib.suppress(ShellError):
                await self._ask_device(live, ShellControl(op="close", session=live.id), CONTROL_TIMEOUT_S)
            with contextlib.suppress(TimeoutError):  # its last output and exit status
                await asyncio.wait_for(live.device_done.wait(), DEVICE_END_WAIT_S)
        live.transcript.finish()
        await self._flush(live)
        opened = live.clock.opened
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
                    "duration_s": round(time.monotonic() - opened, 3),
                    "bytes_in": live.transcript.bytes_in,
                    "bytes_out": live.transcript.bytes_out,
                },
            )
        except MahavishnuError as exc:
            log.error("a shell's end could not be audited", extra={"session": live.id, "reason": str(exc)})
        live.ended, live.ended_at = True, time.monotonic()
        live.notify()

    async def _flush(self, live: Live) -> None:
        async with live.flushing:
            taken = live.transcript.take()
            if not taken:
                return
            entries = [
                record_entry(actor=live.identity, device=live.device, session=live.id, seq=seq, segment=segment)
                for seq, segment in taken
            ]
            results = await asyncio.gather(*(self.audit.record(**entry) for entry in entries), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            log.error("a shell transcript could not be audited", extra={"session": live.id, "reason": str(failed[0])})
            if not live.ending:  # a session the trail cannot follow does not go on
                self._spawn(self._finish(live, "failed"))

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
                self._spawn(self._finish(live, reason))
            elif now - live.last_ping >= PING_S:
                live.last_ping = now
                self._spawn(self._ping(live))
        if now - last_flush >= FLUSH_S:
            last_flush = now
            for live in list(self.sessions.values()):
                if not live.ending and live.transcript.pending():
                    self._spawn(self._flush(live))
        return last_flush

    async def _ping(self, live: Live) -> None:
        try:
            reply = await self._ask_device(live, ShellControl(op="ping", session=live.id), CONTROL_TIMEOUT_S)
        except ShellError as exc:
            if exc.code == "503":  # no agent: gone (a slow answer is not proof of anything)
                await self._finish(live, "device_lost")
            return
        if reply.ok:
            return
        with contextlib.suppress(TimeoutError):  # it may have just ended, its end message on the way
            await asyncio.wait_for(live.device_done.wait(), 1.0)
        if not live.ending and not live.device_done.is_set():
            await self._finish(live, "device_lost")

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def start_shell_broker(
    nc: Client,
    *,
    resolve: Resolver,
    audit: AuditTrail,
    limits: Limits,
    system: Client | None = None,
    version: str = "0.1.0",
) -> ShellBroker:
    """A running broker on `nc` (the control identity); `system` (the system identity) for DISCONNECT events."""
    broker = ShellBroker(nc, resolve=resolve, audit=audit, limits=limits, system=system, version=version)
    await broker.start()
    return broker
