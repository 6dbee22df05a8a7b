"""The `updates` read model: the artifacts (added, removed) and the versions each device reports installed.

A device reports its installed versions in its reported state under "software"
({"pump-fw": "2.1.0", ...}): the agent after every update it commits or rolls back, and at
every start. Each report is the whole truth, so it replaces the device's rows. The state of
an update under way is its `update.install` command's, kept by the `commands` read model.
"""

from __future__ import annotations

import json

from core.events import ArtifactAdded, ArtifactRemoved, Event, ReportedState
from projections.projection import Statement

SOFTWARE = "software"  # the reported state's key of the installed versions


class Updates:
    name: str = "updates"
    version: int = 1
    sources: tuple[str, ...] = ("mesh.evt.artifact.>", "mesh.evt.device.*.reported")
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS artifacts ("
        " name TEXT NOT NULL, version TEXT NOT NULL, device_type TEXT NOT NULL, length INTEGER NOT NULL,"
        " sha256 TEXT NOT NULL, depends TEXT NOT NULL, filename TEXT, added_at TEXT NOT NULL, added_by TEXT,"
        " removed_at TEXT, removed_by TEXT, seq INTEGER NOT NULL, PRIMARY KEY (name, version))",
        "CREATE TABLE IF NOT EXISTS device_software ("
        " device_id TEXT NOT NULL, name TEXT NOT NULL, version TEXT NOT NULL, reported_at TEXT NOT NULL,"
        " PRIMARY KEY (device_id, name))",
        # compliance counts the devices of one artifact: walk its rows only
        "CREATE INDEX IF NOT EXISTS device_software_by_name ON device_software (name, version)",
    )

    def apply(self, event: Event, seq: int) -> list[Statement]:
        at = event.occurred_at.isoformat()
        match event:
            case ArtifactAdded():
                return [
                    (
                        "INSERT INTO artifacts (name, version, device_type, length, sha256, depends, filename,"
                        " added_at, added_by, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (name, version) DO UPDATE SET device_type = excluded.device_type,"
                        " length = excluded.length, sha256 = excluded.sha256, depends = excluded.depends,"
                        " filename = excluded.filename, added_at = excluded.added_at, added_by = excluded.added_by,"
                        " removed_at = NULL, removed_by = NULL, seq = excluded.seq",
                        (
                            event.name,
                            event.version,
                            event.device_type,
                            event.length,
                            event.sha256,
                            json.dumps(list(event.depends)),
                            event.filename or None,
                            at,
                            event.actor,
                            seq,
                        ),
                    )
                ]
            case ArtifactRemoved():
                return [
                    (
                        "UPDATE artifacts SET removed_at = ?, removed_by = ?, seq = ? WHERE name = ? AND version = ?",
                        (at, event.actor, seq, event.name, event.version),
                    )
                ]
            case ReportedState(device_id=device, state=state):
                software = state.get(SOFTWARE)
                installed = software if isinstance(software, dict) else {}
                return [
                    ("DELETE FROM device_software WHERE device_id = ?", (device,)),
                    *(
                        (
                            "INSERT INTO device_software (device_id, name, version, reported_at) VALUES (?, ?, ?, ?)",
                            (device, name, version, at),
                        )
                        for name, version in sorted(installed.items())
                        if isinstance(name, str) and isinstance(version, str)
                    ),
                ]
        return []
