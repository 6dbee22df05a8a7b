"""The `devices` read model: registry, presence, tags and last telemetry of every device (a fold into SQL).

The fold is pure but for one input: the device data keys, which open the sealed personal
fields (core.events.SEALED_DEVICE_FIELDS). With the key, a field is stored in the clear
(the file is encrypted); without it (erased, or no key store given) the column is NULL.
So a rebuild after an erasure holds nothing of the erased fields, and the live file
drops them when it applies the DeviceErased event; both end with the same rows.
"""

from __future__ import annotations

import json
from typing import Literal, get_args

from core.events import (
    SEALED_DEVICE_FIELDS,
    DesiredStateSet,
    DeviceEnrolled,
    DeviceErased,
    DeviceHeartbeat,
    DeviceRevoked,
    DeviceRotated,
    DeviceTagged,
    Event,
    ReportedState,
    SshHostRegistered,
    TelemetryReported,
)
from core.sealing import KeyStore, device_subject, reveal
from projections.projection import Statement

_UPSERT_SEEN = (
    "INSERT INTO devices (device_id, status, last_seen) VALUES (?, 'unknown', ?) "
    "ON CONFLICT (device_id) DO UPDATE SET last_seen = max(coalesce(last_seen, ''), excluded.last_seen)"
)


_UPSERT_SEEN_BY_CONTROL = (
    "INSERT INTO devices (device_id, status) VALUES (?, 'unknown') ON CONFLICT (device_id) DO NOTHING"
)


_SET_TAG = (
    "INSERT INTO device_tags (device_id, key, value) VALUES (?, ?, ?) "
    "ON CONFLICT (device_id, key) DO UPDATE SET value = excluded.value"
)
_REMOVE_TAG = "DELETE FROM device_tags WHERE device_id = ? AND key = ?"

# How the mesh reaches a device, as this read model names it: its agent over NATS, an
# MQTT-only device served by up's bridge, or a host over SSH.
Transport = Literal["agent", "mqtt", "ssh"]
TRANSPORTS: tuple[str, ...] = get_args(Transport)

_SEALED_COLUMNS = "".join(f", {field} TEXT" for field in SEALED_DEVICE_FIELDS)
_SEALED_NAMES = "".join(f", {field}" for field in SEALED_DEVICE_FIELDS)
_SEALED_VALUES = ", ?" * len(SEALED_DEVICE_FIELDS)
_SEALED_UPDATE = "".join(f", {field} = excluded.{field}" for field in SEALED_DEVICE_FIELDS)
_SEALED_CLEARED = "".join(f"{field} = NULL, " for field in SEALED_DEVICE_FIELDS)


class Devices:
    """One row per device; telemetry keeps the last value of each metric.

    `keys` opens the sealed personal fields; without it they are stored as NULL (as if erased).
    """

    name: str = "devices"
    # 2: the shadow (desired, reported); 3: the sealed personal fields and erased_at;
    # 4: transport (agent, ssh), the SSH endpoint and its pinned host key fingerprint;
    # 5: site, transport mqtt, tags, and the indexes of the list's filters
    version: int = 5
    sources: tuple[str, ...] = ("mesh.evt.device.>",)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS devices ("
        " device_id TEXT PRIMARY KEY, status TEXT NOT NULL, serial TEXT, enrolled_at TEXT, revoked_at TEXT,"
        " last_seen TEXT, uptime_s REAL, outbox INTEGER, cert_fingerprint TEXT, seq INTEGER,"
        f" desired TEXT, desired_version INTEGER, reported TEXT, reported_at TEXT{_SEALED_COLUMNS}, erased_at TEXT,"
        " transport TEXT, endpoint TEXT, host_key_fingerprint TEXT, site TEXT)",
        "CREATE TABLE IF NOT EXISTS telemetry_last ("
        " device_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, at TEXT NOT NULL,"
        " PRIMARY KEY (device_id, metric))",
        "CREATE TABLE IF NOT EXISTS device_tags ("
        " device_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (device_id, key))",
        # The list's filters (projections.device_queries): each walks its index in device
        # id order from the cursor, so a page costs its rows, not the fleet's size. Presence
        # has none: it compares last_seen with the time of asking, and most of a fleet
        # matches either way, so walking the ids and stopping at a full page is cheaper.
        "CREATE INDEX IF NOT EXISTS devices_by_site ON devices (site, device_id)",
        "CREATE INDEX IF NOT EXISTS devices_by_transport ON devices (transport, device_id)",
        "CREATE INDEX IF NOT EXISTS device_tags_by_value ON device_tags (key, value, device_id)",
    )

    def __init__(self, keys: KeyStore | None = None) -> None:
        self.keys = keys

    def apply(self, event: Event, seq: int) -> list[Statement]:
        at = event.occurred_at.isoformat()
        match event:
            case DeviceEnrolled(device_id=device, serial=serial, transport=transport, site=site):
                subject = device_subject(device)
                key = self.keys.get(subject) if self.keys is not None else None  # read now: it may be erased later
                personal = tuple(
                    reveal(key, getattr(event, field), subject=subject, field=field) for field in SEALED_DEVICE_FIELDS
                )
                return [
                    (
                        "INSERT INTO devices (device_id, status, serial, enrolled_at, seq, transport, site"
                        f"{_SEALED_NAMES}) VALUES (?, 'enrolled', ?, ?, ?, ?, ?{_SEALED_VALUES}) "
                        "ON CONFLICT (device_id) DO UPDATE SET status = 'enrolled', serial = excluded.serial, "
                        "enrolled_at = excluded.enrolled_at, revoked_at = NULL, seq = excluded.seq, "
                        f"transport = excluded.transport, site = excluded.site, erased_at = NULL{_SEALED_UPDATE}",
                        (device, serial, at, seq, enrolled_transport(transport), site or None, *personal),
                    )
                ]
            case SshHostRegistered(device_id=device, host=host, port=port, user=user, fingerprint_sha256=pinned):
                # A host the SSH gateway runs commands on: no certificate, registered (again) by an operator.
                return [
                    (
                        "INSERT INTO devices (device_id, status, enrolled_at, seq, transport, endpoint,"
                        " host_key_fingerprint) VALUES (?, 'registered', ?, ?, 'ssh', ?, ?) "
                        "ON CONFLICT (device_id) DO UPDATE SET status = 'registered', seq = excluded.seq, "
                        "transport = 'ssh', endpoint = excluded.endpoint, "
                        "host_key_fingerprint = excluded.host_key_fingerprint",
                        (device, at, seq, f"{user}@{_host_port(host, port)}", pinned),
                    )
                ]
            case DeviceErased(device_id=device):
                return [
                    (_UPSERT_SEEN_BY_CONTROL, (device,)),
                    (
                        f"UPDATE devices SET {_SEALED_CLEARED}erased_at = ?, seq = ? WHERE device_id = ?",
                        (at, seq, device),
                    ),
                ]
            case DeviceTagged(device_id=device, tags=tags, removed=removed):
                return [
                    (_UPSERT_SEEN_BY_CONTROL, (device,)),
                    *((_SET_TAG, (device, key, value)) for key, value in tags.items()),
                    *((_REMOVE_TAG, (device, key)) for key in removed),
                ]
            case DeviceRevoked(device_id=device):
                return [
                    (
                        "UPDATE devices SET status = 'revoked', revoked_at = ?, seq = ? WHERE device_id = ?",
                        (at, seq, device),
                    )
                ]
            case DeviceRotated(device_id=device, new_serial=serial):
                return [("UPDATE devices SET serial = ?, seq = ? WHERE device_id = ?", (serial, seq, device))]
            case DeviceHeartbeat(device_id=device, uptime_s=uptime, outbox=outbox, cert_fingerprint_sha256=cert):
                return [
                    (_UPSERT_SEEN, (device, at)),
                    (
                        "UPDATE devices SET uptime_s = ?, outbox = ?, cert_fingerprint = ? WHERE device_id = ?",
                        (uptime, outbox, cert, device),
                    ),
                ]
            case TelemetryReported(device_id=device, metrics=metrics):
                return [(_UPSERT_SEEN, (device, at))] + [
                    (
                        "INSERT INTO telemetry_last (device_id, metric, value, at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (device_id, metric) DO UPDATE SET value = excluded.value, at = excluded.at",
                        (device, metric, value, at),
                    )
                    for metric, value in metrics.items()
                ]
            case DesiredStateSet(device_id=device, state=state, version=version):
                return [
                    (_UPSERT_SEEN_BY_CONTROL, (device,)),
                    (
                        "UPDATE devices SET desired = ?, desired_version = ? WHERE device_id = ?",
                        (json.dumps(state, sort_keys=True), version, device),
                    ),
                ]
            case ReportedState(device_id=device, state=state):
                return [
                    (_UPSERT_SEEN, (device, at)),
                    (
                        "UPDATE devices SET reported = ?, reported_at = ? WHERE device_id = ?",
                        (json.dumps(state, sort_keys=True), at, device),
                    ),
                ]
        return []  # other device events (commands) belong to other read models

    def scrubs(self, event: Event) -> bool:
        """An erasure: the runner empties the WAL after it, so no old page image keeps the erased fields."""
        return isinstance(event, DeviceErased)


def enrolled_transport(transport: str) -> str:
    """The read model's transport of an enrolled device (pure): mqtt, else the agent (over NATS)."""
    return "mqtt" if transport == "mqtt" else "agent"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def delta(desired: dict[str, object], reported: dict[str, object]) -> dict[str, object]:
    """The desired values the device does not report yet (pure): the shadow's delta."""
    return {key: value for key, value in desired.items() if reported.get(key, _MISSING) != value}


_MISSING = object()
