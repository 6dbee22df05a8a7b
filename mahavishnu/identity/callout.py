"""The auth callout service: nats-server asks on $SYS.REQ.USER.AUTH, we answer with a signed user or a refusal.

Runs in `up` on the control connection, in a queue group so that several `up`s of a
cluster share the work. Every answer is signed with the issuer key the server's
configuration names (issuer.py); a request we cannot read is refused, never dropped,
because the server would otherwise hold the connection until its auth timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import nkeys
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mahavishnu.identity import natsjwt
from mahavishnu.identity.decision import (
    Fleet,
    Grant,
    Refusal,
    Request,
    decide,
    parse_request,
    response_claims,
    user_claims,
)
from mahavishnu.identity.errors import CalloutError

log = logging.getLogger("mahavishnu.identity")

SUBJECT = "$SYS.REQ.USER.AUTH"  # nats-server's own subject for callout requests, in the callout account
QUEUE = "mahavishnu-identity"


@dataclass
class Counts:
    """What the service has answered since it started (read by tests and metrics)."""

    admitted: int = 0
    refused: int = 0
    unreadable: int = 0
    seconds: float = 0.0  # time spent deciding and signing
    refusals: list[str] = field(default_factory=list)  # the last few reasons, newest last

    def refuse(self, reason: str) -> None:
        self.refused += 1
        self.refusals = [*self.refusals[-19:], reason]


Audit = Callable[[Request, Refusal], Coroutine[Any, Any, None]]


class CalloutService:
    """Answers the server's authorization requests from `fleet()`'s view, signing with `signer`.

    `audit`, when given, records each refusal that names an identity (who, why, over what,
    with which MQTT client id) after the answer went out: the server's own event of the
    refused connection names neither the certificate's identity nor the callout's reason.
    """

    def __init__(
        self, nc: Client, signer: nkeys.KeyPair, fleet: Callable[[], Fleet], *, audit: Audit | None = None
    ) -> None:
        self._nc = nc
        self._signer = signer
        self._fleet = fleet
        self._audit = audit
        self._auditing: set[asyncio.Task[None]] = set()
        self.counts = Counts()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(SUBJECT, queue=QUEUE, cb=self._answer)
        await self._nc.flush()  # subscribed at the server before a device may ask

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        await asyncio.gather(*self._auditing, return_exceptions=True)

    async def _answer(self, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            decided = self._decide(msg.data)
            response = None if decided is None else self._sign(*decided)
        finally:
            self.counts.seconds += time.perf_counter() - started
        if response is not None and msg.reply:
            await self._nc.publish(msg.reply, response)
        if decided is None or self._audit is None:
            return
        request, decision = decided
        if isinstance(decision, Refusal) and decision.who:
            task = asyncio.create_task(self._audit(request, decision))
            self._auditing.add(task)
            task.add_done_callback(self._audited)

    def _audited(self, task: asyncio.Task[None]) -> None:
        self._auditing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a refused connection could not be audited", extra={"reason": repr(task.exception())})

    def respond(self, request_jwt: bytes) -> bytes | None:
        """The signed response to one request (None when the request cannot even say whom to answer)."""
        decided = self._decide(request_jwt)
        return None if decided is None else self._sign(*decided)

    def _decide(self, request_jwt: bytes) -> tuple[Request, Grant | Refusal] | None:
        try:
            request = parse_request(natsjwt.claims_of(request_jwt))
        except (CalloutError, ValueError, TypeError) as exc:
            self.counts.unreadable += 1
            log.warning("unreadable authorization request", extra={"error": str(exc)})
            return None  # nobody to address a refusal to: the server times the connection out
        return request, decide(request, self._fleet())

    def _sign(self, request: Request, decision: Grant | Refusal) -> bytes:
        if isinstance(decision, Refusal):
            self.counts.refuse(decision.reason)
            log.info(
                "connection refused",
                extra={"who": decision.who, "reason": decision.reason, "client_id": request.client_id},
            )
            claims = response_claims(request, error=decision.reason)
        else:
            self.counts.admitted += 1
            claims = response_claims(request, user_jwt=self._user_jwt(decision, request.user_nkey))
        return natsjwt.encode(claims, self._signer).encode()

    def _user_jwt(self, grant: Grant, user_nkey: str) -> str:
        return natsjwt.encode(user_claims(grant, user_nkey), self._signer)
