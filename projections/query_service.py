"""The NATS door to the queries: a micro service, so `nats micro ls` lists it and `nats req` calls it.

Endpoints are `mesh.q.<query>` (mesh.q.devices.list, mesh.q.commands.get, ...), bodies
are JSON, and errors come back in the micro protocol's error headers
(`Nats-Service-Error-Code`, `Nats-Service-Error`) with an empty body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service

from core.audit import AuditTrail
from projections.authz import Caller, allowed, caller_of
from projections.queries import QUERIES, QueryError, ReadModels, parse

log = logging.getLogger("mahavishnu.queries")

SERVICE_NAME = "mahavishnu-query"
SUBJECT_PREFIX = "mesh.q"


Resolver = Callable[[str], Caller | None]


async def start_query_service(
    nc: Client,
    models: ReadModels,
    *,
    version: str,
    resolve: Resolver = lambda user: None,
    audit: AuditTrail | None = None,
) -> Service:
    """Register every query as an endpoint of one micro service on `nc`.

    `resolve` maps a requester's server user name (from Nats-Request-Info) to a Caller.
    """
    service = await add_service(nc, name=SERVICE_NAME, version=version, description="Mahavishnu read-model queries")
    for name, (request_type, query) in QUERIES.items():
        await service.add_endpoint(
            name=name.replace(".", "-"),
            subject=f"{SUBJECT_PREFIX}.{name}",
            handler=_handler(models, name, request_type, query, resolve, audit),
        )
    return service


def _handler(
    models: ReadModels,
    name: str,
    request_type: type[Any],
    query: Any,
    resolve: Resolver,
    audit: AuditTrail | None,
) -> Any:
    async def record(caller: Caller | None, outcome: str, details: dict[str, Any]) -> None:
        if audit is not None:
            actor = caller.identity if caller else "unknown"
            await audit.record(actor=actor, category="query", action=name, outcome=outcome, details=details)

    async def handle(request: Request) -> None:
        caller = caller_of((request.headers or {}).get("Nats-Request-Info"), resolve)
        if caller is None or not allowed(caller, name):
            who = f"{caller.identity} ({caller.role})" if caller else "an unknown caller"
            log.warning("query denied", extra={"query": name, "caller": who})
            await record(caller, "denied", {"role": caller.role if caller else ""})
            await request.respond_error("403", f"{who} may not run {name}")
            return
        await record(caller, "ok", {"role": caller.role})
        try:
            answer = await query(models, parse(request_type, request.data))
        except QueryError as exc:
            await request.respond_error(str(exc.code), str(exc))
            return
        except Exception as exc:  # a bug: answer without details, log the cause
            log.exception("query failed", extra={"query": name})
            await request.respond_error("500", f"internal error in {name}: {type(exc).__name__}")
            return
        await request.respond(msgspec.json.encode(answer))

    return handle
