"""`artifacts.list`, `artifacts.get` and `updates.compliance`: what can be installed, and how far the fleet is.

    artifacts.list {name, removed}   -> {"artifacts": [{name, version, device_type, length, sha256,
                                         depends, filename, added_at, added_by, removed_at}, ...]}
                                         newest version first within each name; removed ones only on ask
    artifacts.get {name, version}    -> {"artifact": {...}} (404 if unknown)
    updates.compliance {name}        -> {"artifacts": [{name, latest, devices: {latest, pending,
                                         failed, outdated}, total}, ...]} (projections.updates.compliance)

Compliance reads two read models: `updates` (the artifacts, the versions devices report) and
`commands` (the `update.install` commands sent, and where each is).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec

from core.commands import CommandState, effective_state
from core.events.base import utc_now
from core.updates import naming
from core.updates.states import INSTALL_COMMAND
from core.updates.versions import latest, version_key
from projections.reading import QueryError, ReadModels, read_rows
from projections.updates.compliance import UpdateSent, compliance, last_sent, status


class ArtifactList(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None  # one artifact's versions only
    removed: bool = False  # also the removed ones


class ArtifactGet(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    version: str


class ComplianceRequest(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None  # one artifact only


def _name(value: str) -> str:
    try:
        return naming.artifact_name(value)
    except ValueError as exc:
        raise QueryError(400, f"bad request: {exc}") from None


def _artifact(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "version": row["version"],
        "device_type": row["device_type"],
        "length": row["length"],
        "sha256": row["sha256"],
        "depends": json.loads(row["depends"]),
        "filename": row["filename"],
        "added_at": row["added_at"],
        "added_by": row["added_by"],
        "removed_at": row["removed_at"],
    }


async def artifacts_list(models: ReadModels, request: ArtifactList) -> dict[str, Any]:
    """Every artifact (there are versions of software, not devices: no paging), newest version first per name."""
    conditions = [] if request.removed else ["removed_at IS NULL"]
    params: list[object] = []
    if request.name is not None:
        conditions.append("name = ?")
        params.append(_name(request.name))
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await read_rows(models, "updates", f"SELECT * FROM artifacts{where}", *params)
    rows.sort(key=lambda row: version_key(row["version"]), reverse=True)
    rows.sort(key=lambda row: row["name"])  # stable: by name, newest version first within each
    return {"artifacts": [_artifact(row) for row in rows]}


async def artifacts_get(models: ReadModels, request: ArtifactGet) -> dict[str, Any]:
    sql = "SELECT * FROM artifacts WHERE name = ? AND version = ?"
    rows = await read_rows(models, "updates", sql, _name(request.name), request.version)
    if not rows:
        raise QueryError(404, f"no artifact {request.name}@{request.version}: `mahavishnu artifact list` lists them")
    return {"artifact": _artifact(rows[0])}


async def updates_compliance(models: ReadModels, request: ComplianceRequest) -> dict[str, Any]:
    """Per artifact name: its latest version and how many devices run it, have it pending, failed it, or run older."""
    only = "" if request.name is None else " AND name = :name"
    named: dict[str, object] = {} if request.name is None else {"name": _name(request.name)}
    available = await read_rows(
        models, "updates", f"SELECT name, version FROM artifacts WHERE removed_at IS NULL{only}", **named
    )
    reported = await read_rows(
        models, "updates", f"SELECT device_id, name, version FROM device_software WHERE 1{only}", **named
    )
    sent_rows = await read_rows(
        models,
        "commands",
        "SELECT device_id, args, state, issued_at, ttl_s FROM commands WHERE name = ?",
        INSTALL_COMMAND,
    )
    versions = _versions(available)
    installed = {(row["device_id"], row["name"]): row["version"] for row in reported}
    sent = [
        update
        for row in sent_rows
        if (update := _sent(row)) is not None and (request.name is None or update.name == request.name)
    ]
    return {"artifacts": [found.as_json() for found in compliance(versions, installed, sent, utc_now())]}


async def device_software(models: ReadModels, device_id: str) -> dict[str, Any]:
    """One device's artifacts (devices.get's "software"): per name the version it runs, its status against the
    latest (projections.updates.compliance), and its last update of it: version, state, detail, when."""
    installed = await read_rows(
        models, "updates", "SELECT name, version FROM device_software WHERE device_id = ?", device_id
    )
    rows = await read_rows(
        models,
        "commands",
        "SELECT device_id, command_id, args, state, detail, issued_at, updated_at, ttl_s FROM commands"
        " WHERE device_id = ? AND name = ?",
        device_id,
        INSTALL_COMMAND,
    )
    sent = [update for row in rows if (update := _sent(row)) is not None]
    last = {name: update for (_, name), update in last_sent(sent).items()}
    running = {row["name"]: row["version"] for row in installed}
    names = sorted(running.keys() | last.keys())
    available = await read_rows(
        models,
        "updates",
        f"SELECT name, version FROM artifacts WHERE removed_at IS NULL AND name IN ({', '.join('?' * len(names))})",
        *names,
    )
    newest = {name: latest(versions) for name, versions in _versions(available).items()}
    now = utc_now()
    return {
        name: {
            "version": running.get(name),
            "latest": newest.get(name),
            "status": status(running.get(name), last.get(name), newest.get(name), now),
            "update": _last_update(last[name], now) if name in last else None,
        }
        for name in names
    }


def _versions(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Rows of (name, version) as each name's versions."""
    versions: dict[str, list[str]] = {}
    for row in rows:
        versions.setdefault(row["name"], []).append(row["version"])
    return versions


def _last_update(sent: UpdateSent, now: datetime) -> dict[str, Any]:
    return {
        "version": sent.version,
        "state": effective_state(sent.state, issued_at=sent.issued_at, ttl_s=sent.ttl_s, now=now).value,
        "detail": sent.detail,
        "command_id": sent.command_id,
        "at": sent.updated_at or (sent.issued_at.isoformat() if sent.issued_at else None),
    }


def _sent(row: dict[str, Any]) -> UpdateSent | None:
    """An update.install row of the commands read model; None for one whose arguments are not an update's."""
    args = json.loads(row["args"] or "{}")
    if not isinstance(args, dict) or not isinstance(args.get("name"), str) or not isinstance(args.get("version"), str):
        return None
    return UpdateSent(
        device_id=row["device_id"],
        name=args["name"],
        version=args["version"],
        state=CommandState(row["state"]),
        issued_at=datetime.fromisoformat(row["issued_at"]) if row["issued_at"] else None,
        ttl_s=row["ttl_s"],
        command_id=row.get("command_id", ""),
        detail=row.get("detail"),
        updated_at=row.get("updated_at"),
    )


UPDATE_QUERIES: dict[str, tuple[type[Any], Any]] = {
    "artifacts.list": (ArtifactList, artifacts_list),
    "artifacts.get": (ArtifactGet, artifacts_get),
    "updates.compliance": (ComplianceRequest, updates_compliance),
}
