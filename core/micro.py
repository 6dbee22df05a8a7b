"""Our side of nats micro: a handler's refusals answered the way micro answers them, where micro cannot.

An endpoint handler refuses a request by raising a ServiceError (ours are ServiceRefusal,
core.errors), and micro answers it with the `Nats-Service-Error-Code` and
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

Handler = Callable[[Request], Awaitable[None]]


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
