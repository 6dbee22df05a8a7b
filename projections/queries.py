"""The query functions behind both doors (NATS micro service and HTTP): read models in, JSON-able documents out.

Every function takes the ReadModels (folder, key, and the event store they follow) and
a decoded request; it reads the encrypted file through projections.readers (pooled
read-only connections that notice when a rebuild swapped the file in).
`projections.status` also asks the streams, since a read model's lag is the distance
between its file and the streams, measured when asked. A bad request or a missing row
raises QueryError with an HTTP-like code, mapped to the micro protocol's error headers
or to an HTTP status at each door.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

import msgspec
import sqlcipher3

from core.commands import CommandState, Step, effective_step
from core.errors import StoreError
from core.events.base import utc_now
from projections import personal
from projections.audit_queries import AUDIT_QUERIES
from projections.campaign_queries import CAMPAIGN_QUERIES
from projections.catalog import CATALOG
from projections.code_queries import CODE_QUERIES
from projections.device_queries import DEVICE_QUERIES, presence_cutoff
from projections.devices import delta
from projections.fleet_summary import SUMMARY_QUERIES
from projections.reading import QueryError as QueryError  # re-exported: both doors import it from here
from projections.reading import ReadModels as ReadModels
from projections.reading import read_rows
from projections.status import read_model_status
from projections.telemetry_queries import TELEMETRY_QUERIES
from projections.updates.queries import UPDATE_QUERIES, device_software

COMMANDS_LIMIT = 1000


class DeviceGet(msgspec.Struct, forbid_unknown_fields=True):
    id: str


class CommandGet(msgspec.Struct, forbid_unknown_fields=True):
    id: str


class CommandList(msgspec.Struct, forbid_unknown_fields=True):
    device: str | None = None  # None: the most recent commands across every device
    limit: int = 50


class Nothing(msgspec.Struct, forbid_unknown_fields=True):
    pass


def parse(request_type: type[Any], body: bytes) -> Any:
    """Decode a request body (empty means {}); QueryError 400 naming what is wrong."""
    try:
        return msgspec.json.decode(body or b"{}", type=request_type)
    except msgspec.ValidationError as exc:
        raise QueryError(400, f"bad request: {exc}") from None
    except msgspec.DecodeError:
        raise QueryError(400, "bad request: the body must be a JSON object") from None


async def devices_get(models: ReadModels, request: DeviceGet) -> dict[str, Any]:
    """One device: its row, presence, tags, shadow, last telemetry and software (each artifact's installed version
    and last update); personal fields as `models.role` sees them."""
    devices = await read_rows(
        models,
        "devices",
        "SELECT *, iif(last_seen >= ?, 'online', 'offline') AS presence FROM devices WHERE device_id = ?",
        presence_cutoff(utc_now()),
        request.id,
    )
    if not devices:
        raise QueryError(404, f"no device {request.id!r}")
    telemetry = await read_rows(
        models,
        "devices",
        "SELECT metric, value, at FROM telemetry_last WHERE device_id = ? ORDER BY metric",
        request.id,
    )
    tags = await read_rows(
        models, "devices", "SELECT key, value FROM device_tags WHERE device_id = ? ORDER BY key", request.id
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
    try:
        software = await device_software(models, request.id)
    except QueryError:  # the updates or commands read model is not built yet: the device's own row still answers
        software = {}
    return {
        **personal.shown(models.role, device),
        "tags": {t["key"]: t["value"] for t in tags},
        "shadow": shadow,
        "telemetry": {t["metric"]: {"value": t["value"], "at": t["at"]} for t in telemetry},
        "software": software,
    }


def _command(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A commands row as it reads at `now`: JSON decoded, and the TTL rule applied (core.commands).

    The row holds what the events say; a command still issued past its time to live reads
    as expired here, so the NATS and HTTP doors and `cmd status` all say the same.
    """
    document = {**row, "args": json.loads(row["args"] or "{}"), "result": json.loads(row["result"] or "null")}
    if row["state"] != CommandState.ISSUED:  # only an issued command can read otherwise
        return document
    issued_at = datetime.fromisoformat(row["issued_at"]) if row["issued_at"] else None
    stored = Step(CommandState.ISSUED)
    current = effective_step(stored, issued_at=issued_at, ttl_s=row["ttl_s"], now=now)
    if current is stored:
        return document
    return {**document, "state": current.state.value, "detail": current.detail}


async def commands_get(models: ReadModels, request: CommandGet) -> dict[str, Any]:
    rows = await read_rows(models, "commands", "SELECT * FROM commands WHERE command_id = ?", request.id)
    if not rows:
        raise QueryError(404, f"no command {request.id!r}")
    return _command(rows[0], utc_now())


async def commands_list(models: ReadModels, request: CommandList) -> dict[str, Any]:
    """One device's commands, or with no device the most recent across the fleet; newest first."""
    if not 1 <= request.limit <= COMMANDS_LIMIT:
        raise QueryError(400, f"bad request: limit must be 1..{COMMANDS_LIMIT}")
    params: tuple[object, ...]
    if request.device is None:
        sql, params = "SELECT * FROM commands ORDER BY issued_at DESC LIMIT ?", (request.limit,)
    else:
        sql = "SELECT * FROM commands WHERE device_id = ? ORDER BY issued_at DESC LIMIT ?"
        params = (request.device, request.limit)
    rows = await read_rows(models, "commands", sql, *params)
    now = utc_now()
    return {"commands": [_command(r, now) for r in rows]}


async def projections_status(models: ReadModels, _: Nothing) -> dict[str, Any]:
    """Per read model: positions, lag in events and seconds (measured against the streams now), parked count."""
    if models.store is None:
        raise QueryError(503, "the read models' lag needs the event store: ask the running mesh")
    found = []
    for name, projection in sorted(CATALOG.items()):
        try:
            status = await read_model_status(projection(), models.store, models.folder, models.key)
        except sqlcipher3.Error as exc:
            raise QueryError(503, f"the {name} read model cannot be read now ({exc}); try again") from exc
        except StoreError as exc:
            raise QueryError(503, f"the streams cannot be asked for the {name} lag now ({exc}); try again") from exc
        found.append(asdict(status))
    return {"read_models": found}


# name -> (request type, function): the endpoints of both doors
QUERIES: dict[str, tuple[type[Any], Any]] = {
    **DEVICE_QUERIES,  # devices.list
    **SUMMARY_QUERIES,  # devices.summary
    "devices.get": (DeviceGet, devices_get),
    "commands.get": (CommandGet, commands_get),
    "commands.list": (CommandList, commands_list),
    **TELEMETRY_QUERIES,
    **AUDIT_QUERIES,
    "projections.status": (Nothing, projections_status),
    **CODE_QUERIES,
    **CAMPAIGN_QUERIES,  # campaigns.list, campaigns.get
    **UPDATE_QUERIES,  # artifacts.list, artifacts.get, updates.compliance
}
