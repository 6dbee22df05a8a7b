"""Events about devices: their identity and what they report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core import subjects
from core.events.base import Event


class DeviceEnrolled(Event, frozen=True, kw_only=True, tag="device.enrolled.v1"):
    """A device received its certificate from the mesh's CA."""

    device_id: str
    serial: str  # the certificate serial, as hex: JSON numbers cannot hold 160 bits safely
    fingerprint_sha256: str
    not_after: datetime

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "enrolled")


class DeviceRevoked(Event, frozen=True, kw_only=True, tag="device.revoked.v1"):
    """A device's certificates were revoked; it may not connect again."""

    device_id: str
    serials: list[str]
    reason: str = "unspecified"

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "revoked")


class DeviceRotated(Event, frozen=True, kw_only=True, tag="device.rotated.v1"):
    """A device received a new certificate; the old one is revoked once the agent switched."""

    device_id: str
    old_serial: str
    new_serial: str
    not_after: datetime

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "rotated")


class TelemetryReported(Event, frozen=True, kw_only=True, tag="device.telemetry.v1"):
    """A device's measurements at one moment."""

    device_id: str
    metrics: dict[str, float]

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "telemetry")


class DeviceHeartbeat(Event, frozen=True, kw_only=True, tag="device.heartbeat.v1"):
    """The agent is alive: presence, and how much it still has to send."""

    device_id: str
    uptime_s: float
    outbox: int = 0
    cert_fingerprint_sha256: str = ""  # which certificate the agent uses: rotation completes once it is the new one

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "heartbeat")


class DesiredStateSet(Event, frozen=True, kw_only=True, tag="device.desired.v1"):
    """The operators' wish for a device's configuration (the shadow's desired half); `version` counts up."""

    device_id: str
    state: dict[str, Any]
    version: int

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "desired")


class ReportedState(Event, frozen=True, kw_only=True, tag="device.reported.v1"):
    """What the device says its configuration is (the shadow's reported half)."""

    device_id: str
    state: dict[str, Any]

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "reported")
