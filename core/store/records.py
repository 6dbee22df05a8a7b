"""What the store hands back: where events were stored, and what was read."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from core.events import Event, EventDecodeError, decode


@dataclass(frozen=True)
class Appended:
    """Where one event was stored. `duplicate` means an earlier append already stored it."""

    stream: str
    seq: int
    subject: str
    event_id: str
    duplicate: bool = False


class StoredEvent(msgspec.Struct, frozen=True):
    """One message read back from a stream. `event` is None when it could not be decoded; `error` says why.

    A Struct rather than a frozen dataclass: a rebuild makes one per event, and a frozen
    dataclass's __init__ (a setattr per field) was a fifth of decoding them.
    """

    stream: str
    seq: int
    subject: str
    data: bytes
    event: Event | None
    error: str | None = None

    @classmethod
    def of(cls, stream: str, seq: int, subject: str, data: bytes) -> StoredEvent:
        """Decode a message read back; one that does not decode keeps its bytes and the reason.

        An event counts only on its own subject: the server lets a device publish on a few
        subjects of its own, and a DeviceRevoked (or any other type) it sent on its
        telemetry subject is a forgery, kept with its reason like a payload that does not decode.
        """
        try:
            event = decode(data)
        except EventDecodeError as exc:
            return cls(stream, seq, subject, data, None, exc.reason)
        if event.subject() != subject:
            reason = f"a {type(event).__name__} belongs on {event.subject()}, not on {subject}: forged or misrouted"
            return cls(stream, seq, subject, data, None, reason)
        return cls(stream, seq, subject, data, event)


@dataclass(frozen=True)
class BulkReport:
    """The outcome of a bulk append: how many events the server acknowledged, and the last sequence
    this append stored (0 when it stored nothing new, every event being a duplicate).

    `duplicates` counts events an earlier append had already stored, when the path reports
    it per event (pipelined publishes); None when it does not (fast batches acknowledge
    runs of events, duplicates included, without telling them apart).
    """

    acknowledged: int
    last_seq: int
    duplicates: int | None = None
