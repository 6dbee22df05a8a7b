"""The base of every event: a frozen, keyword-only msgspec Struct with a versioned tag.

Each concrete event names its tag explicitly (`"device.enrolled.v1"`), never the class
name, so renaming a class never changes the wire format. Schema evolution follows
msgspec's rules: a new field gets a default; a field's type never changes; unknown
fields are ignored so old readers survive new writers. A breaking change is a new tag
plus an upcaster (`core.events.codec.UPCASTERS`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import ClassVar

import msgspec

from core.errors import MahavishnuError


def new_event_id() -> str:
    """A fresh event id; it is also the append's `Nats-Msg-Id`, so retries deduplicate."""
    return uuid.uuid4().hex


def utc_now() -> datetime:
    return datetime.now(UTC)


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True):
    """Metadata shared by every event.

    `actor` is who caused it (a certificate identity such as "control" or a device id);
    `correlation_id` ties together everything one request caused, `causation_id` names
    the event or command that directly caused this one.
    """

    # The stream family this event belongs to, derived from the subject prefix by the store.
    domain: ClassVar[str] = "mesh"

    event_id: str = msgspec.field(default_factory=new_event_id)
    occurred_at: datetime = msgspec.field(default_factory=utc_now)
    actor: str = "system"
    correlation_id: str | None = None
    causation_id: str | None = None

    @property
    def tag(self) -> str:
        """The versioned type tag, e.g. "device.enrolled.v1"."""
        return str(self.__struct_config__.tag)

    def subject(self) -> str:
        """The NATS subject this event is appended on."""
        raise NotImplementedError(f"{type(self).__name__} does not define its subject")


class EventDecodeError(MahavishnuError):
    """A payload is not a valid event of any known type; `.reason` says why (for parking)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed event: {reason}")


# Encoding needs no catalog of the events (decoding does: core.events.codec), so a writer
# of a few kinds of event (a device's agent) loads only those.
_encoder = msgspec.json.Encoder()


def encode(event: Event) -> bytes:
    """An event's wire format: JSON, with its tag in "type"."""
    return _encoder.encode(event)
