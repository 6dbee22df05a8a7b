"""The operators' requests (mesh.shell.*, mahavishnu.gateways.shell.protocol): who asks, whether they may, the answer.

The requester and its connection are the server's word (Nats-Request-Info, core.requester);
the role comes from `resolve`. Opening needs the admin or operator role and binds the
session to the opening connection (mahavishnu.gateways.shell.session); input, reads,
resizes and closes from any other connection are refused and audited. Refusals are
ShellErrors: micro answers them with its error headers.

Opens, reads and closes wait (for the device, for output), so each is answered in a task
of its own, at most MAX_IN_FLIGHT at once; input and resizes are answered inline, in
order: keystrokes must not overtake one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from nats.micro.request import Request, ServiceError
from nats.micro.service import Service

from core import subjects
from core.errors import MahavishnuError
from core.micro import answer_as_micro
from core.requester import RequestInfoError, requester_of
from edge.shell_protocol import ShellControl, valid_session
from mahavishnu.gateways.shell.device_link import OPEN_TIMEOUT_S, DeviceLink
from mahavishnu.gateways.shell.errors import ShellError
from mahavishnu.gateways.shell.live import Live
from mahavishnu.gateways.shell.protocol import (
    INPUT_MAX,
    POLL_WAIT_S,
    PREFIX,
    Opened,
    OpenRequest,
    ReadRequest,
    Resize,
)
from mahavishnu.gateways.shell.session import (
    Clock,
    Connection,
    Limits,
    connection_of,
    explain,
    may_open,
    refusal_for_role,
    same_connection,
)
from mahavishnu.gateways.shell.table import SessionTable
from mahavishnu.gateways.shell.trail import ShellTrail
from projections.authz import Caller

log = logging.getLogger("mahavishnu.shell")

MAX_IN_FLIGHT = 64

Resolver = Callable[[str], Caller | None]
Handler = Callable[[Request], Coroutine[Any, Any, None]]


class Endpoints:
    """The five endpoints of the broker's micro service; `drain()` waits for the requests being answered."""

    def __init__(
        self, *, resolve: Resolver, table: SessionTable, trail: ShellTrail, link: DeviceLink, limits: Limits
    ) -> None:
        self.resolve = resolve
        self.table = table
        self.trail = trail
        self.link = link
        self.limits = limits
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._answering: set[asyncio.Task[None]] = set()

    async def register(self, service: Service) -> None:
        endpoints: list[tuple[str, str, Handler, bool]] = [
            ("open", f"{PREFIX}.open", self._open, True),
            ("input", f"{PREFIX}.input.*", self._input, False),  # in order, inline: keystrokes must not overtake
            ("read", f"{PREFIX}.read.*", self._read, True),
            ("resize", f"{PREFIX}.resize.*", self._resize, False),
            ("close", f"{PREFIX}.close.*", self._close, True),
        ]
        for name, subject, handler, concurrent in endpoints:
            await service.add_endpoint(name=name, subject=subject, handler=self._endpoint(name, handler, concurrent))

    async def drain(self) -> None:
        if self._answering:
            await asyncio.gather(*self._answering, return_exceptions=True)

    def _endpoint(self, name: str, handler: Handler, concurrent: bool) -> Handler:
        """`handler` as micro calls it: a ShellError it raises is answered by micro with its code and description.

        A concurrent endpoint's request is answered in a task of its own, where micro no
        longer sees what the handler raises; there the error is answered the way micro does.
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
            await answer_as_micro(handle, request, endpoint=f"shell {name}", log=log)

        async def dispatch(request: Request) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(apart(request))
            self._answering.add(task)
            task.add_done_callback(self._answered)

        return dispatch if concurrent else handle

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._answering.discard(task)
        self._slots.release()

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
            await self.trail.refused(caller, wanted.device, wanted.shell, str(refusal))
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
        self.table.add(live)  # before the agent starts the shell: its first output must find the session
        control = ShellControl(
            op="open",
            session=live.id,
            shell=wanted.shell,
            rows=wanted.rows,
            cols=wanted.cols,
            term=wanted.term,
            idle_s=self.limits.idle_s,
            max_s=self.limits.max_s,
        )
        try:
            reply = await self.link.ask(live.device, control, OPEN_TIMEOUT_S)
        except ShellError as exc:
            self.table.drop(live)
            await self.trail.refused(caller, wanted.device, wanted.shell, str(exc))
            raise
        if not reply.ok:
            self.table.drop(live)
            await self.trail.refused(caller, wanted.device, wanted.shell, reply.error)
            raise ShellError(403, f"{wanted.device} refused: {reply.error}")
        live.shell, live.pid = reply.shell, reply.pid
        try:
            await self.trail.opened(live)
        except MahavishnuError as exc:
            self.table.end(live, "failed")
            raise ShellError(503, f"the session could not be audited, so it was not opened: {exc}") from exc
        self.table.opened(live)  # journaled: a broker after a crash ends it cleanly
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

    async def _owned(self, request: Request, action: str) -> Live:
        """The session of the request's subject, if the request came through the connection that opened it."""
        caller, connection = self._caller(request)
        session = request.subject.rsplit(".", 1)[-1]
        live = self.table.get(session) if valid_session(session) else None
        if live is None:
            raise ShellError(404, f"no session {session}: it ended long ago or never existed; open a new one")
        if not same_connection(live.owner, connection):
            await self.trail.intruded(caller, connection, live, action)
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
        await self.link.type(live.device, live.id, data)
        await request.respond(b"")

    async def _read(self, request: Request) -> None:
        live = await self._owned(request, "read")
        try:
            after = msgspec.json.decode(request.data or b"{}", type=ReadRequest).after
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ShellError(400, f'bad read request ({exc}): send {{"after": <offset>}}') from None
        live.release(after)
        await live.wait_output(after, POLL_WAIT_S)
        output = live.output(after, self.limits)
        await request.respond(msgspec.json.encode(output))
        if output.ended:
            live.told.set()

    async def _resize(self, request: Request) -> None:
        live = await self._owned(request, "resize")
        try:
            size = msgspec.json.decode(request.data, type=Resize)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ShellError(400, f'bad resize request ({exc}): send {{"rows": 24, "cols": 80}}') from None
        if not live.ending:
            resize = ShellControl(op="resize", session=live.id, rows=size.rows, cols=size.cols)
            with contextlib.suppress(ShellError):
                await self.link.ask(live.device, resize)
        await request.respond(b"")

    async def _close(self, request: Request) -> None:
        live = await self._owned(request, "close")
        if not live.ending:
            await self.table.finish(live, "closed")
        await request.respond(b"")
