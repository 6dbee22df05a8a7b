"""The NATS door to the queries: a micro service, so `nats micro ls` lists it and `nats req` calls it.

Endpoints are `mesh.q.<query>` (mesh.q.devices.list, mesh.q.commands.get, ...), bodies
are JSON, and errors come back in the micro protocol's error headers
(`Nats-Service-Error-Code`, `Nats-Service-Error`) with an empty body: every refusal is
a QueryError, which is a micro ServiceError, raised and answered in one place
(core.micro.answer_as_micro).

nats-py runs a subscription's callback for one message at a time, so an endpoint whose
callback awaited the whole query would answer one request after the other, idle while
the audit record travels and the read model is read. Each request is answered in a task
of its own instead, admitted by the process's Admission (projections.admission): a
fair share of the running slots per caller, or an immediate 429/503, so the callback
never waits and one caller's flood never queues in front of another's query. (The
micro service's own statistics therefore count the time to hand a request over, not
to answer it, and micro cannot see what the answer raises: answer_as_micro answers it
as micro would.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from core import subjects
from core.audit import AuditTrail
from core.micro import answer_as_micro
from projections import readers
from projections.admission import Admission
from projections.audited import answer_admitted, audit_refusal
from projections.authz import Caller, allowed, caller_of
from projections.queries import QUERIES, QueryError, ReadModels, parse

log = logging.getLogger("mahavishnu.queries")

SERVICE_NAME = "mahavishnu-query"
SUBJECT_PREFIX = subjects.QUERY_PREFIX

Resolver = Callable[[str], Caller | None]
Answer = Callable[[Request], Coroutine[Any, Any, None]]


class QueryService:
    """The running service; `stop()` unregisters it and lets the requests already taken be answered."""

    def __init__(self, service: Service, folder: Path, admission: Admission) -> None:
        self.service = service
        self.folder = folder
        self.admission = admission
        self._answering: set[asyncio.Task[None]] = set()

    async def stop(self) -> None:
        await self.service.stop()
        if self._answering:
            await asyncio.gather(*self._answering, return_exceptions=True)
        readers.close(self.folder)

    async def _dispatch(self, name: str, answer: Answer, request: Request) -> None:
        task = asyncio.create_task(answer_as_micro(answer, request, endpoint=name, log=log))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)


async def start_query_service(
    nc: Client,
    models: ReadModels,
    *,
    version: str,
    resolve: Resolver = lambda user: None,
    audit: AuditTrail | None = None,
    admission: Admission | None = None,
) -> QueryService:
    """Register every query as an endpoint of one micro service on `nc`.

    `resolve` maps a requester's server user name (from Nats-Request-Info) to a Caller;
    `admission` is shared with the HTTP door when both run (one of its own otherwise).
    """
    admission = admission or Admission()
    service = await add_service(nc, name=SERVICE_NAME, version=version, description="Mahavishnu read-model queries")
    running = QueryService(service, models.folder, admission)
    for name, (request_type, query) in QUERIES.items():
        answer = _answer(models, name, request_type, query, resolve, audit, admission)

        async def handle(request: Request, name: str = name, answer: Answer = answer) -> None:
            await running._dispatch(name, answer, request)

        await service.add_endpoint(name=name.replace(".", "-"), subject=f"{SUBJECT_PREFIX}.{name}", handler=handle)
    return running


def _answer(
    models: ReadModels,
    name: str,
    request_type: type[Any],
    query: Any,
    resolve: Resolver,
    audit: AuditTrail | None,
    admission: Admission,
) -> Answer:
    async def record(caller: Caller | None, outcome: str, details: dict[str, Any]) -> None:
        if audit is not None:
            actor = caller.identity if caller else "unknown"
            await audit.record(actor=actor, category="query", action=name, outcome=outcome, details=details)

    async def search(body: bytes, role: str) -> Any:
        return await query(replace(models, role=role), parse(request_type, body))  # role: projections.personal

    async def answer(request: Request) -> None:
        """Answer one request, or raise the QueryError that refuses it (answered by answer_as_micro)."""
        caller = caller_of((request.headers or {}).get("Nats-Request-Info"), resolve)
        if caller is None or not allowed(caller, name):
            who = f"{caller.identity} ({caller.role})" if caller else "an unknown caller"
            log.warning("query denied", extra={"query": name, "caller": who})
            await audit_refusal(name, record(caller, "denied", {"role": caller.role if caller else ""}))
            raise QueryError(403, f"{who} may not run {name}")
        answer = await answer_admitted(
            name,
            admission,
            caller.identity,
            lambda: search(request.data, caller.role),
            lambda outcome, details: record(caller, outcome, details),
            {"role": caller.role},
        )
        await request.respond(msgspec.json.encode(answer))

    return answer
