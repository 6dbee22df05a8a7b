"""The HTTP door's one write: an operator sends a device a command from the dashboard.

    POST /api/devices/{id}/commands   {"name", "args", "ttl_s", "timeout_s"}  ->  202 {"command_id"}

This package reads; it does not write commands (it imports only core). Whoever serves the
door gives `send`: in `up`, the control side's (mahavishnu.control.commands.send), which
appends the CommandIssued and its audit record under the caller's name, as `cmd send`
does. Who may send: the roles whose permissions hold SEND_COMMAND (projections.authz).
A refusal is audited as well; anonymous requests are not (they cannot flood the trail).

The body must be JSON (Content-Type: application/json). A page on another site can make a
browser post a form, which carries the browser's client certificate with it, but only as
form data: so a form elsewhere cannot send a command in an operator's name (CSRF).
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.audit import AuditTrail
from core.errors import MahavishnuError
from projections.audited import audit_refusal
from projections.authz import SEND_COMMAND, Refusal, allowed
from projections.command_requests import CommandRequest, Send
from projections.http_auth import Authenticator, credentials_of
from projections.reading import QueryError, ReadModels, read_rows

PATH = "/api/devices/{id}/commands"


def command_operation(security: list[dict[str, list[str]]]) -> dict[str, Any]:
    """The OpenAPI description of the POST (pure)."""
    body = msgspec.json.schema(CommandRequest)
    return {
        "post": {
            "operationId": "commands_send",
            "summary": "send a device a command (operators and admins)",
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "security": security,
            "responses": {
                "202": {"description": "stored: {command_id, device_id}; follow it at /api/commands/{command_id}"},
                "400": {"description": "bad request"},
                "401": {"description": "no credential, or one that does not hold"},
                "403": {"description": "the caller's role may not send commands"},
                "404": {"description": "no such device"},
                "409": {"description": "the device is revoked"},
                "415": {"description": "the body is not JSON"},
                "503": {"description": "the command could not be stored now"},
            },
        }
    }


async def _sendable(models: ReadModels, device: str) -> None:
    """QueryError 404 for a device the devices read model does not know, 409 for a revoked one."""
    rows = await read_rows(models, "devices", "SELECT status FROM devices WHERE device_id = ?", device)
    if not rows:
        raise QueryError(404, f"no device {device!r}: see /api/devices for the fleet's ids")
    if rows[0]["status"] == "revoked":
        raise QueryError(409, f"device {device!r} is revoked: it will never take a command")


def route(models: ReadModels, *, authenticate: Authenticator, audit: AuditTrail | None, send: Send) -> Route:
    async def record(actor: str, device: str, details: dict[str, Any]) -> None:
        if audit is not None:
            await audit.record(
                actor=actor,
                category="command",
                action="command.send",
                target=device,
                outcome="denied",
                details={**details, "door": "http"},
            )

    async def handle(request: Request) -> Response:
        device = request.path_params["id"]
        credentials = credentials_of(request)
        caller = authenticate(credentials)
        if isinstance(caller, Refusal):
            if caller.actor:
                details = {"auth": credentials.method, "reason": caller.reason}
                await audit_refusal(SEND_COMMAND, record(caller.actor, device, details))
            headers = {"WWW-Authenticate": "Bearer"} if caller.status == 401 else None
            return JSONResponse({"error": caller.reason}, caller.status, headers=headers)
        if not allowed(caller, SEND_COMMAND):
            details = {"role": caller.role, "auth": credentials.method}
            await audit_refusal(SEND_COMMAND, record(caller.identity, device, details))
            return JSONResponse({"error": f"{caller.identity} ({caller.role}) may not send commands"}, 403)
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return JSONResponse(
                {"error": "bad request: send the command as JSON (Content-Type: application/json)"}, 415
            )
        try:
            command = msgspec.json.decode(await request.body(), type=CommandRequest)
        except msgspec.ValidationError as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, 400)
        except msgspec.DecodeError:
            return JSONResponse({"error": "bad request: the body must be a JSON object"}, 400)
        try:
            await _sendable(models, device)
            command_id = await send(caller.identity, device, command)
        except QueryError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        except MahavishnuError as exc:
            return JSONResponse({"error": f"the command could not be stored now ({exc}); try again"}, 503)
        return JSONResponse({"command_id": command_id, "device_id": device}, 202)

    return Route(PATH, handle, methods=["POST"])
