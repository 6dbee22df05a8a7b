"""A devices read model for the list's tests: written with the projection's own schema and fold, no server."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlcipher3

from core.events import DeviceEnrolled, DeviceHeartbeat, DeviceTagged, Event
from projections.devices import Devices
from projections.reading import ReadModels

KEY = secrets.token_hex(32)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def write_devices(folder: Path, events: list[Event]) -> ReadModels:
    """A devices read model holding `events`, written with the projection's own schema and statements."""
    connection = sqlcipher3.connect(str(folder / "devices.db"), isolation_level=None)
    connection.execute(f"PRAGMA key = \"x'{KEY}'\"")
    for statement in Devices.schema:
        connection.execute(statement)
    connection.execute("BEGIN")
    for seq, event in enumerate(events, 1):
        for sql, values in Devices().apply(event, seq):
            connection.execute(sql, values)
    connection.execute("COMMIT")
    connection.close()
    return ReadModels(folder, KEY)


def enrolled(device_id: str, **fields: Any) -> DeviceEnrolled:
    return DeviceEnrolled(device_id=device_id, serial="1f", fingerprint_sha256="ab" * 32, not_after=LONG_AGO, **fields)


def fleet(count: int) -> list[Event]:
    """`count` devices: every third at site north, every fifth over MQTT, every seventh tagged rack=r7;
    the even ones heard from just now, the rest long ago or never."""
    now = datetime.now(UTC)
    events: list[Event] = []
    for n in range(count):
        device = f"dev-{n:04d}"
        site = "north" if n % 3 == 0 else ""
        events.append(enrolled(device, site=site, transport="mqtt" if n % 5 == 0 else "nats"))
        events.append(DeviceTagged(device_id=device, tags={"rack": "r7" if n % 7 == 0 else "r1", "env": "prod"}))
        if n % 2 == 0:
            events.append(DeviceHeartbeat(device_id=device, uptime_s=1.0, occurred_at=now))
        elif n % 4 == 1:
            events.append(DeviceHeartbeat(device_id=device, uptime_s=1.0, occurred_at=LONG_AGO))
    return events
