"""The `devices` read model: registry, presence and last telemetry of every device (pure fold into SQL)."""

from __future__ import annotations

import json

from core.events import (
    DesiredStateSet,
    DeviceEnrolled,
    DeviceHeartbeat,
    DeviceRevoked,
    DeviceRotated,
    Event,
    ReportedState,
    SshHostRegistered,
    TelemetryReported,
)
from projections.projection import Statement

_UPSERT_SEEN = (
    "INSERT INTO devices (device_id, status, last_seen) VALUES (?, 'unknown', ?) "
    "ON CONFLICT (device_id) DO UPDATE SET last_seen = max(coalesce(last_seen, ''), excluded.last_seen)"
)


_UPSERT_SEEN_BY_CONTROL = (
    "INSERT INTO devices (device_id, status) VALUES (?, 'unknown') ON CONFLICT (device_id) DO NOTHING"
)


class Devices:
    """One row per device; telemetry keeps the last value of each metric."""

    name: str = "devices"
    version: int = 3  # 2: the shadow (desired, reported); 3: transport (agent, ssh) and the SSH endpoint
    sources: tuple[str, ...] = ("mesh.evt.device.>",)
    schema: tuple[str, ...] = (
        "CREATE TABLE IF NOT EXISTS devices ("
        " device_id TEXT PRIMARY KEY, status TEXT NOT NULL, serial TEXT, enrolled_at TEXT, revoked_at TEXT,"
        " last_seen TEXT, uptime_s REAL, outbox INTEGER, cert_fingerprint TEXT, seq INTEGER,"
        " desired TEXT, desired_version INTEGER, reported TEXT, reported_at TEXT,"
        " transport TEXT, endpoint TEXT, host_key_fingerprint TEXT)",
        "CREATE TABLE IF NOT EXISTS telemetry_last ("
        " device_id TEXT NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL, at TEXT NOT NULL,"
        " PRIMARY KEY (device_id, metric))",
    )

    def apply(self, event: Event, seq: int) -> list[Statement]:
        at = event.occurred_at.isoformat()
        match event:
            case DeviceEnrolled(device_id=device, serial=serial):
                return [
                    (
                        "INSERT INTO devices (device_id, status, serial, enrolled_at, seq, transport) "
                        "VALUES (?, 'enrolled', ?, ?, ?, 'agent') "
                        "ON CONFLICT (device_id) DO UPDATE SET status = 'enrolled', serial = excluded.serial, "
                        "enrolled_at = excluded.enrolled_at, revoked_at = NULL, seq = excluded.seq, "
                        "transport = excluded.transport",
                        (device, serial, at, seq),
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


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def delta(desired: dict[str, object], reported: dict[str, object]) -> dict[str, object]:
    """The desired values the device does not report yet (pure): the shadow's delta."""
    return {key: value for key, value in desired.items() if reported.get(key, _MISSING) != value}


_MISSING = object()
