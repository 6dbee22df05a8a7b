"""The auth callout service: nats-server asks on $SYS.REQ.USER.AUTH, we answer with a signed user or a refusal.

Runs in `up` on the control connection, in a queue group so that several `up`s of a
cluster share the work. Every answer is signed with the issuer key the server's
configuration names (issuer.py); a request we cannot read is refused, never dropped,
because the server would otherwise hold the connection until its auth timeout.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import nkeys
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mahavishnu.identity import natsjwt
from mahavishnu.identity.decision import (
    Fleet,
    Grant,
    Refusal,
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


class CalloutService:
    """Answers the server's authorization requests from `fleet()`'s view, signing with `signer`."""

    def __init__(self, nc: Client, signer: nkeys.KeyPair, fleet: Callable[[], Fleet]) -> None:
        self._nc = nc
        self._signer = signer
        self._fleet = fleet
        self.counts = Counts()
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self._nc.subscribe(SUBJECT, queue=QUEUE, cb=self._answer)
        await self._nc.flush()  # subscribed at the server before a device may ask

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def _answer(self, msg: Msg) -> None:
        started = time.perf_counter()
        try:
            response = self.respond(msg.data)
        finally:
            self.counts.seconds += time.perf_counter() - started
        if response is not None and msg.reply:
            await self._nc.publish(msg.reply, response)

    def respond(self, request_jwt: bytes) -> bytes | None:
        """The signed response to one request (None when the request cannot even say whom to answer)."""
        try:
            request = parse_request(natsjwt.claims_of(request_jwt))
        except (CalloutError, ValueError, TypeError) as exc:
            self.counts.unreadable += 1
            log.warning("unreadable authorization request", extra={"error": str(exc)})
            return None  # nobody to address a refusal to: the server times the connection out
        decision = decide(request, self._fleet())
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
