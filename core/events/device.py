"""Events about devices: their identity and what they report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core import subjects
from core.events.base import Event
from core.events.sealed import Sealed

# The personal fields of a device, sealed with its data key from the first event on and
# erased with it (`mahavishnu erase device`). This tuple is the one list of them: the
# enrolment seals exactly these, the devices read model unseals exactly these.
# Telemetry and reported state are not in it: a device writes them itself, and the edge
# install has no `cryptography` to seal with (README, "Erasure").
SEALED_DEVICE_FIELDS: tuple[str, ...] = ("owner", "location")


class DeviceEnrolled(Event, frozen=True, kw_only=True, tag="device.enrolled.v1"):
    """A device received its certificate from the mesh's CA."""

    device_id: str
    serial: str  # the certificate serial, as hex: JSON numbers cannot hold 160 bits safely
    fingerprint_sha256: str
    not_after: datetime
    # Personal fields (SEALED_DEVICE_FIELDS), optional; added later with defaults, so older
    # enrolments still decode. Never plaintext: only the device's data key opens them.
    owner: Sealed | None = None
    location: Sealed | None = None
    # Where and how it connects, added later with defaults: "" means not said (older
    # enrolments, and the enrolment does not fill them yet), read as the agent over NATS
    # and no edge site. `transport` is the enrolment's ("nats" or "mqtt"), `site` the
    # edge site whose server the device connects to.
    transport: str = ""
    site: str = ""

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "enrolled")


class DeviceErased(Event, frozen=True, kw_only=True, tag="device.erased.v1"):
    """The device's data key was destroyed: its sealed fields are unreadable everywhere, for good.

    `key_id` names the destroyed key ("" when there was none to destroy); `fields` the
    sealed fields that became unreadable. The events that carry them stay in the stream.
    """

    device_id: str
    key_id: str = ""
    fields: list[str] = []

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "erased")


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


class DeviceTagged(Event, frozen=True, kw_only=True, tag="device.tagged.v1"):
    """Operators labelled a device: each of `tags` set (a key's new value replaces its old), `removed` keys dropped.

    Tags are checked by core.tags before they are recorded; they are plain text, never
    personal data. A change needs no expected sequence: it names every key it touches,
    so two changes in either order end with the later one's values for its own keys.
    """

    device_id: str
    tags: dict[str, str] = {}
    removed: list[str] = []

    def subject(self) -> str:
        return subjects.device_event(self.device_id, "tagged")
