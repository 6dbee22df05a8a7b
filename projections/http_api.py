"""The HTTP door to the queries: JSON for dashboards, with its OpenAPI document and a small dashboard page.

    GET /api/devices?limit=&after=&presence=&site=&transport=&tag=&prefix=   devices.list (a page, and `next`)
    GET /api/devices/{id}           devices.get
    GET /api/devices/{id}/telemetry?metric=&limit=   telemetry.history (each metric's recent points)
    GET /api/fleet                  devices.summary (online, offline, never seen, revoked: by site, transport)
    GET /api/commands?device=ID&limit=N   commands.list (no device: the fleet's most recent)
    GET /api/commands/{id}          commands.get
    GET /api/audit?actor=&device=&action=&since=&until=&limit=   audit.search
    GET /api/projections            projections.status (positions, lag, parked of each read model)
    GET /api/campaigns?limit=&after=&status=   campaigns.list (a page, newest first, and `next`)
    GET /api/campaigns/{id}         campaigns.get (counts per state and per wave, the rule that fired)
    GET /api/artifacts?name=&removed=   artifacts.list (newest version first per name)
    GET /api/updates/compliance?name=   updates.compliance (per artifact: latest, pending, failed, outdated)
    GET /api/code/symbol?name=&prefix=&repo=&limit=      code.symbol
    GET /api/code/search?text=&repo=&limit=              code.search (full text, redacted snippets)
    GET /api/code/context?repo=&path=&symbol=            code.context (source, callers, callees)
    GET /api/code/files?repo=&commit=                    code.files
    GET /api/code/repos                                  code.repos (last indexed commit, freshness)
    POST /api/devices/{id}/commands  an operator sends a command (projections.http_commands)
    GET /api/me                     who the credential names, its role, what it may run (the
                                    dashboard shows only those panels; not audited: it reads no read model)
    GET /openapi.json               the OpenAPI 3.1 document
    GET /, /dashboard/{file}        the dashboard (projections/dashboard/: no CDN, nothing fetched elsewhere)

Callers authenticate with an operator's client certificate (over HTTPS) or with
`Authorization: Bearer <token>` (`mahavishnu operator token`); either names the operator
and so the role (see projections.http_auth). The same query functions and the same role
checks as the NATS door; every query, served or denied, is audited (anonymous requests
excepted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from importlib import resources
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.audit import AuditTrail
from projections.admission import Admission, Refused
from projections.audited import answer_admitted, audit_refusal
from projections.authz import SEND_COMMAND, Refusal, allowed
from projections.command_requests import Send
from projections.http_auth import Authenticator, credentials_of
from projections.http_commands import PATH as COMMAND_PATH
from projections.http_commands import command_operation
from projections.http_commands import route as command_route
from projections.queries import QUERIES, QueryError, ReadModels

# path -> (query, path parameter that fills the request's `id`, if any)
PATHS: dict[str, tuple[str, str | None]] = {
    "/api/devices": ("devices.list", None),
    "/api/devices/{id}": ("devices.get", "id"),
    "/api/devices/{id}/telemetry": ("telemetry.history", "id"),
    "/api/fleet": ("devices.summary", None),
    "/api/commands": ("commands.list", None),
    "/api/commands/{id}": ("commands.get", "id"),
    "/api/audit": ("audit.search", None),
    "/api/projections": ("projections.status", None),
    "/api/campaigns": ("campaigns.list", None),
    "/api/campaigns/{id}": ("campaigns.get", "id"),
    "/api/artifacts": ("artifacts.list", None),
    "/api/updates/compliance": ("updates.compliance", None),
    "/api/code/symbol": ("code.symbol", None),
    "/api/code/search": ("code.search", None),
    "/api/code/context": ("code.context", None),
    "/api/code/files": ("code.files", None),
    "/api/code/repos": ("code.repos", None),
}


def openapi(*, client_certificates: bool = False, sends_commands: bool = False) -> dict[str, Any]:
    """The OpenAPI document, derived from the query request types (pure).

    `client_certificates`: the door serves HTTPS and accepts operator certificates as well as tokens.
    `sends_commands`: the door takes operators' commands (projections.http_commands).
    """
    schemes: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer"}}
    if client_certificates:
        schemes["operator_certificate"] = {
            "type": "mutualTLS",
            "description": "an operator's client certificate from the mesh CA (mahavishnu operator add)",
        }
    security: list[dict[str, list[str]]] = [{scheme: []} for scheme in schemes]  # any one of them
    paths: dict[str, Any] = {}
    for path, (name, path_param) in PATHS.items():
        request_type, _ = QUERIES[name]
        schema = msgspec.json.schema(request_type)
        properties = schema.get("$defs", {}).get(request_type.__name__, {}).get("properties", {})
        parameters = [
            {
                "name": field,
                "in": "path" if field == path_param else "query",
                "required": field == path_param,
                "schema": spec,
            }
            for field, spec in properties.items()
        ]
        paths[path] = {
            "get": {
                "operationId": name.replace(".", "_"),
                "summary": name,
                "parameters": parameters,
                "security": security,
                "responses": {
                    "200": {
                        "description": "the answer",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "400": {"description": "bad request"},
                    "401": {
                        "description": "no credential, or one that does not hold (unknown token, revoked certificate)"
                    },
                    "403": {"description": "the caller may not run this query (its role, or it is not an operator)"},
                    "404": {"description": "not found"},
                    "429": {"description": "this caller has too many queries waiting; retry after their answers"},
                    "503": {"description": "the read model is not ready, or the service has too many queries waiting"},
                },
            }
        }
    if sends_commands:
        paths[COMMAND_PATH] = command_operation(security)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Mahavishnu query API", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": schemes},
    }


def routes(
    models: ReadModels,
    *,
    authenticate: Authenticator,
    audit: AuditTrail | None,
    admission: Admission | None = None,
    client_certificates: bool = False,
    send_command: Send | None = None,
) -> list[BaseRoute]:
    """The API's routes, to serve beside a service's probes (over HTTPS when `client_certificates`).

    `admission` is the one the NATS door uses too, when both run in one process.
    `send_command`: how an operator's command is sent; without it the door only reads.
    """
    admission = admission or Admission()
    document = openapi(client_certificates=client_certificates, sends_commands=send_command is not None)
    files = dashboard_files()

    async def spec(request: Request) -> Response:
        return JSONResponse(document)

    async def dashboard(request: Request) -> Response:
        name = request.path_params.get("file", "index.html")
        if name not in files:
            return JSONResponse({"error": f"no dashboard file {name!r}"}, 404)
        body, media_type = files[name]
        return Response(body, media_type=media_type, headers=DASHBOARD_HEADERS)

    async def me(request: Request) -> Response:
        caller = authenticate(credentials_of(request))
        if isinstance(caller, Refusal):
            headers = {"WWW-Authenticate": "Bearer"} if caller.status == 401 else None
            return JSONResponse({"error": caller.reason}, caller.status, headers=headers)
        may = [name for name in QUERIES if allowed(caller, name)]
        if send_command is not None and allowed(caller, SEND_COMMAND):
            may.append(SEND_COMMAND)
        return JSONResponse({"identity": caller.identity, "role": caller.role, "may": sorted(may)})

    writes = (
        []
        if send_command is None
        else [command_route(models, authenticate=authenticate, audit=audit, send=send_command)]
    )
    return [
        Route("/openapi.json", spec, methods=["GET"]),
        Route("/", dashboard, methods=["GET"]),
        Route("/dashboard/{file}", dashboard, methods=["GET"]),
        Route("/api/me", me, methods=["GET"]),
        *writes,
        *(
            Route(path, _endpoint(models, name, param, authenticate, audit, admission), methods=["GET"])
            for path, (name, param) in PATHS.items()
        ),
    ]


# The browser itself holds the page to what it is: its own scripts and styles from this
# server, no inline script, nothing fetched elsewhere, never framed by another site.
DASHBOARD_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
_MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


def dashboard_files() -> dict[str, tuple[bytes, str]]:
    """The dashboard's files (projections/dashboard/) by name, with their media types: read once, served from memory."""
    folder = resources.files("projections").joinpath("dashboard")
    found = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if suffix in _MEDIA_TYPES:
            found[entry.name] = (entry.read_bytes(), _MEDIA_TYPES[suffix])
    return found


def _endpoint(
    models: ReadModels,
    name: str,
    path_param: str | None,
    authenticate: Authenticator,
    audit: AuditTrail | None,
    admission: Admission,
) -> Callable[[Request], Any]:
    request_type, query = QUERIES[name]

    async def record(actor: str, outcome: str, details: dict[str, Any]) -> None:
        if audit is not None:
            details = {**details, "door": "http"}
            await audit.record(actor=actor, category="query", action=name, outcome=outcome, details=details)

    async def handle(request: Request) -> Response:
        credentials = credentials_of(request)
        caller = authenticate(credentials)
        if isinstance(caller, Refusal):
            if caller.actor:  # a certificate named who was refused
                details = {"auth": credentials.method, "reason": caller.reason}
                await audit_refusal(name, record(caller.actor, "denied", details))
            headers = {"WWW-Authenticate": "Bearer"} if caller.status == 401 else None
            return JSONResponse({"error": caller.reason}, caller.status, headers=headers)
        how = {"role": caller.role, "auth": credentials.method}
        if not allowed(caller, name):
            await audit_refusal(name, record(caller.identity, "denied", how))
            return JSONResponse({"error": f"{caller.identity} ({caller.role}) may not run {name}"}, 403)
        params: dict[str, Any] = dict(request.query_params)
        if path_param:
            params[path_param] = request.path_params[path_param]
        try:
            decoded = msgspec.convert(params, request_type, strict=False)
        except msgspec.ValidationError as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, 400)
        try:
            answer = await answer_admitted(
                name,
                admission,
                caller.identity,
                lambda: query(replace(models, role=caller.role), decoded),  # role: projections.personal
                lambda outcome, details: record(caller.identity, outcome, details),
                how,
            )
        except Refused as refused:
            return JSONResponse({"error": str(refused)}, refused.status, headers={"Retry-After": "1"})
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        return Response(msgspec.json.encode(answer), media_type="application/json")

    return handle
