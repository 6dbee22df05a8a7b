"""What every query function shares: the read models it reads, its error, and reading rows.

A bad request or a missing row raises QueryError with an HTTP-like status: the NATS door
answers it in the micro protocol's error headers (it is a micro ServiceError), the HTTP
door with that status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlcipher3

from core.errors import ServiceRefusal
from core.store import EventStore
from projections import readers


class QueryError(ServiceRefusal):
    """A query refused: a bad request (400), a missing row (404), a read model not ready (503), ...

    `.status` is the HTTP status the HTTP door answers; as a micro ServiceError, `.code`
    and `.description` are what the NATS door's error headers carry.
    """


@dataclass(frozen=True)
class ReadModels:
    """What the queries read: the encrypted files in `folder`, and the event store they follow.

    `store` is needed only by `projections.status` (the lag); a tool that reads the files
    alone (`mahavishnu audit search`) leaves it out. `role` is the role of whoever asks
    through them, which decides the personal fields the answers show (projections.personal):
    each door sets its caller's for each request; None shows none.
    """

    folder: Path
    key: str = field(repr=False)  # never in a log line or a traceback
    store: EventStore | None = None
    role: str | None = None


async def read_rows(models: ReadModels, model: str, sql: str, *params: object, **named: object) -> list[dict[str, Any]]:
    """The rows of `sql` on one read model, its `?` parameters given in order or its `:name` ones by name."""
    try:
        return await readers.rows(models.folder / f"{model}.db", models.key, sql, named or params)
    except readers.NotBuilt:
        raise QueryError(503, f"the {model} read model is not built yet") from None
    except sqlcipher3.Error as exc:
        raise QueryError(503, f"the {model} read model cannot be read now ({exc}); try again") from exc
