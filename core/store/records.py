"""What the store hands back: where events were stored, and what was read."""

from __future__ import annotations

from dataclasses import dataclass

from core.events import Event


@dataclass(frozen=True)
class Appended:
    """Where one event was stored. `duplicate` means an earlier append already stored it."""

    stream: str
    seq: int
    subject: str
    event_id: str
    duplicate: bool = False


@dataclass(frozen=True)
class StoredEvent:
    """One message read back from a stream. `event` is None when it could not be decoded; `error` says why."""

    stream: str
    seq: int
    subject: str
    data: bytes
    event: Event | None
    error: str | None = None


@dataclass(frozen=True)
class BulkReport:
    """The outcome of a bulk append: every event acknowledged, as new or as a duplicate."""

    appended: int
    duplicates: int
    batches: int
    first_seq: int
    last_seq: int

    @property
    def total(self) -> int:
        return self.appended + self.duplicates
