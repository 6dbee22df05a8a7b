"""Our side of nats micro: our refusals (ServiceRefusal, NoAnswer), answered the way micro answers them.

An endpoint handler refuses a request by raising a ServiceError (ours are ServiceRefusal,
below; core.errors names them too, but they live here, with the nats micro they derive
from, which a device's agent does not load), and micro answers it with the `Nats-Service-Error-Code` and
`Nats-Service-Error` headers, which `nats req` shows. Micro sees only what the handler
it awaits raises, though: a service that answers each request in a task of its own, so
that a slow request does not hold up the next (projections.query_service), runs the real
handler where micro cannot see it. `answer_as_micro` runs it there and answers the same
way; anything else raised is a bug, answered 500 without details where micro would send
the exception's repr, and logged with its traceback.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.micro.request import Request, ServiceError

from core.errors import MahavishnuError

Handler = Callable[[Request], Awaitable[None]]


class ServiceRefusal(MahavishnuError, ServiceError):
    """A request refused with an HTTP-like `status` (404, 503, ...); `.code` and `.description` are micro's.

    Also a nats micro ServiceError: a micro endpoint handler that raises it is answered by
    micro itself with the `Nats-Service-Error-Code` and `Nats-Service-Error` headers, which
    `nats req` shows. ServiceError is a dataclass: its `__init__` takes (code, description)
    and never calls Exception's, so str(e) would be the tuple of both, and its `__eq__`
    compares by value, which makes it unhashable. This class sets these up as an
    exception's: str(e) is the description, equality is identity, and it pickles whole.
    """

    def __init__(self, status: int, description: str) -> None:
        Exception.__init__(self, description)  # str(e) is the description, as for every MahavishnuError
        self.status = status
        self.code = str(status)
        self.description = description

    __eq__ = Exception.__eq__
    __hash__ = Exception.__hash__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.description!r})"

    def __reduce__(self) -> tuple[type[ServiceRefusal], tuple[int, str]]:  # args hold the description alone
        return type(self), (self.status, self.description)


class NoAnswer(ServiceRefusal):
    """A request to one of our services or to a device got no answer: 503 when nobody listens or our
    connection is gone, 504 when the answer did not come in time. See core.store.nats_errors.unanswered."""


async def answer_as_micro(handler: Handler, request: Request, *, endpoint: str, log: logging.Logger) -> None:
    """Run `handler(request)`; a ServiceError it raises becomes micro's error answer, anything else a 500.

    Never raises (but for cancellation): it runs in a task nobody awaits for its outcome.
    """
    try:
        try:
            await handler(request)
        except ServiceError as refusal:
            await request.respond_error(refusal.code, refusal.description)
    except Exception as exc:  # a bug, or the connection went away: log the cause, answer without details
        log.exception("request failed", extra={"endpoint": endpoint})
        with contextlib.suppress(Exception):
            await request.respond_error("500", f"internal error in {endpoint}: {type(exc).__name__}")
