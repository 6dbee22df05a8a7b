"""What a projection is: a name, the events it reads, its tables, and a pure fold of events into SQL.

    class Devices:
        name = "devices"; version = 1; sources = ("mesh.evt.device.>",)
        schema = ("CREATE TABLE devices (...)",)
        def apply(self, event: Event, seq: int) -> list[Statement]: ...

`apply` is pure: it returns the statements that bring the tables up to date with one
event, and the runner executes them in the same transaction as the new position. An
event the projection cannot use raises `Park(reason)`; the runner keeps it, with its
sequence and the reason, in the `parked` table and goes on.

A projection that erases data (the devices model, on DeviceErased) also defines
`scrubs(event) -> bool`: its file is then written with SQLite's secure_delete, and after
a batch holding such an event the runner empties the WAL, whose older page images would
otherwise keep the erased values.

A projection whose fold needs more than one row (the campaigns model: a campaign's every
execution) keeps that state in memory, beside its tables, and says so by being
`Remembers`: the live runner then recalls what a batch needs from the stream first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from core.errors import MahavishnuError
from core.events import Event

Statement = tuple[str, tuple[Any, ...]]


class Park(MahavishnuError):
    """This event cannot be applied; `reason` says why (it is kept in the parked table).

    Raised by a projection's pure `apply` and caught by the runner (projections.applying),
    never by a caller: it does not leave the projections.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Projection(Protocol):
    name: str
    version: int  # a new version means new tables: the runner rebuilds from sequence 1
    sources: tuple[str, ...]  # the subject filters it reads, each inside one stream
    schema: tuple[str, ...]

    def apply(self, event: Event, seq: int) -> list[Statement]: ...


@runtime_checkable
class Remembers(Protocol):
    """A projection that keeps state in memory between events, each piece under a key (a campaign id); one source.

    Its memory is empty after a restart, a rebuild or a failed batch. Before each batch the
    live runner asks which keys the batch's subjects name that it does not hold
    (`missing`, which may also let go of keys it no longer needs), reads each one's
    history before the batch from the stream (`history(key)`: the subject filter) and
    hands it over (`recall`). When the file opens, and after a rebuild, the keys that
    `awake` (a query on its tables) names are recalled at once: those whose state shows
    before their next event (the campaigns not over, in the metrics). A rebuild's bulk
    loader replays from sequence 1, so its copy of the projection learns everything in
    order and is never asked.
    """

    awake: str  # SELECT of one column: the keys to recall when the file opens

    def missing(self, batch: Sequence[str]) -> list[str]: ...  # the subjects of the batch

    def history(self, key: str) -> str: ...

    def recall(self, key: str, events: Sequence[Event]) -> None: ...

    def forget(self) -> None: ...
