"""What every query function shares: the read models it reads, its error, and reading rows.

A bad request or a missing row raises QueryError with an HTTP-like code, mapped to the
micro protocol's error headers or to an HTTP status at each door.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlcipher3

from core.errors import MahavishnuError
from core.store import EventStore
from projections import readers


class QueryError(MahavishnuError):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ReadModels:
    """What the queries read: the encrypted files in `folder`, and the event store they follow.

    `store` is needed only by `projections.status` (the lag); a tool that reads the files
    alone (`mahavishnu audit search`) leaves it out.
    """

    folder: Path
    key: str = field(repr=False)  # never in a log line or a traceback
    store: EventStore | None = None


async def read_rows(models: ReadModels, model: str, sql: str, *params: object) -> list[dict[str, Any]]:
    try:
        return await readers.rows(models.folder / f"{model}.db", models.key, sql, params)
    except readers.NotBuilt:
        raise QueryError(503, f"the {model} read model is not built yet") from None
    except sqlcipher3.Error as exc:
        raise QueryError(503, f"the {model} read model cannot be read now ({exc}); try again") from exc
