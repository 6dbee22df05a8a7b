"""The query functions behind both doors (NATS micro service and HTTP): read models in, JSON-able documents out.

Every function takes the read-model folder, its key and a decoded request; it reads
the encrypted file through projections.readers (pooled read-only connections that
notice when a rebuild swapped the file). A bad request or a
missing row raises QueryError with an HTTP-like code, mapped to the micro protocol's
error headers or to an HTTP status at each door.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import sqlcipher3

from core.errors import MahavishnuError
from projections import readers
from projections.devices import delta


class QueryError(MahavishnuError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class DeviceGet(msgspec.Struct, forbid_unknown_fields=True):
    id: str


class CommandGet(msgspec.Struct, forbid_unknown_fields=True):
    id: str


class CommandList(msgspec.Struct, forbid_unknown_fields=True):
    device: str
    limit: int = 50


class Nothing(msgspec.Struct, forbid_unknown_fields=True):
    pass


class AuditSearch(msgspec.Struct, forbid_unknown_fields=True):
    actor: str | None = None
    device: str | None = None  # the entry's target
    action: str | None = None
    since: str | None = None  # ISO-8601
    until: str | None = None
    limit: int = 100


def parse(request_type: type[Any], body: bytes) -> Any:
    """Decode a request body (empty means {}); QueryError 400 naming what is wrong."""
    try:
        return msgspec.json.decode(body or b"{}", type=request_type)
    except msgspec.ValidationError as exc:
        raise QueryError(400, f"bad request: {exc}") from None
    except msgspec.DecodeError:
        raise QueryError(400, "bad request: the body must be a JSON object") from None


async def _rows(folder: Path, key: str, model: str, sql: str, *params: object) -> list[dict[str, Any]]:
    try:
        return await readers.rows(folder / f"{model}.db", key, sql, params)
    except readers.NotBuilt:
        raise QueryError(503, f"the {model} read model is not built yet") from None
    except sqlcipher3.Error as exc:
        raise QueryError(503, f"the {model} read model cannot be read now ({exc}); try again") from exc


async def devices_list(folder: Path, key: str, _: Nothing) -> dict[str, Any]:
    rows = await _rows(
        folder, key, "devices", "SELECT device_id, status, last_seen, uptime_s, outbox FROM devices ORDER BY device_id"
    )
    return {"devices": rows}


async def devices_get(folder: Path, key: str, request: DeviceGet) -> dict[str, Any]:
    devices = await _rows(folder, key, "devices", "SELECT * FROM devices WHERE device_id = ?", request.id)
    if not devices:
        raise QueryError(404, f"no device {request.id!r}")
    telemetry = await _rows(
        folder,
        key,
        "devices",
        "SELECT metric, value, at FROM telemetry_last WHERE device_id = ? ORDER BY metric",
        request.id,
    )
    device = devices[0]
    desired = json.loads(device.pop("desired") or "{}")
    reported = json.loads(device.pop("reported") or "{}")
    shadow = {
        "desired": desired,
        "reported": reported,
        "delta": delta(desired, reported),
        "version": device.pop("desired_version"),
        "reported_at": device.pop("reported_at"),
    }
    return {
        **device,
        "shadow": shadow,
        "telemetry": {t["metric"]: {"value": t["value"], "at": t["at"]} for t in telemetry},
    }


def _command(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "args": json.loads(row["args"] or "{}"), "result": json.loads(row["result"] or "null")}


async def commands_get(folder: Path, key: str, request: CommandGet) -> dict[str, Any]:
    rows = await _rows(folder, key, "commands", "SELECT * FROM commands WHERE command_id = ?", request.id)
    if not rows:
        raise QueryError(404, f"no command {request.id!r}")
    return _command(rows[0])


async def commands_list(folder: Path, key: str, request: CommandList) -> dict[str, Any]:
    if not 1 <= request.limit <= 1000:
        raise QueryError(400, "bad request: limit must be 1..1000")
    rows = await _rows(
        folder,
        key,
        "commands",
        "SELECT * FROM commands WHERE device_id = ? ORDER BY issued_at DESC LIMIT ?",
        request.device,
        request.limit,
    )
    return {"commands": [_command(r) for r in rows]}


async def audit_search(folder: Path, key: str, request: AuditSearch) -> dict[str, Any]:
    if not 1 <= request.limit <= 10_000:
        raise QueryError(400, "bad request: limit must be 1..10000")
    clauses, params = audit_filter(request)
    rows = await _rows(
        folder, key, "audit", f"SELECT * FROM audit{clauses} ORDER BY seq DESC LIMIT ?", *params, request.limit
    )
    return {"entries": [{**r, "details": json.loads(r["details"]), "chain_ok": bool(r["chain_ok"])} for r in rows]}


def audit_filter(request: AuditSearch) -> tuple[str, list[object]]:
    """The WHERE clause of an audit search (pure)."""
    conditions: list[str] = []
    params: list[object] = []
    for column, value, operator in (
        ("actor", request.actor, "="),
        ("target", request.device, "="),
        ("action", request.action, "="),
        ("at", request.since, ">="),
        ("at", request.until, "<="),
    ):
        if value is not None:
            conditions.append(f"{column} {operator} ?")
            params.append(value)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), params


# name -> (request type, function): the endpoints of both doors
QUERIES: dict[str, tuple[type[Any], Any]] = {
    "devices.list": (Nothing, devices_list),
    "devices.get": (DeviceGet, devices_get),
    "commands.get": (CommandGet, commands_get),
    "commands.list": (CommandList, commands_list),
    "audit.search": (AuditSearch, audit_search),
}
