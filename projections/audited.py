"""The rule both query doors keep: a query is answered only once its audit record is stored.

The read runs while the record travels, so the two costs overlap, but the answer leaves
only after the record is acknowledged. Answering first would save a little latency, no
throughput, and open a window in which a crash or a refused append leaves a read the
trail does not show: what the trail exists to rule out. A record that fails withholds
the answer (503), and the read is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from core.errors import MahavishnuError
from projections.admission import Admission, Refused
from projections.reading import QueryError

log = logging.getLogger("mahavishnu.queries")

T = TypeVar("T")
Record = Callable[[str, dict[str, Any]], Awaitable[object]]  # (outcome, details): the door's audit record


async def answer_admitted(
    name: str,
    admission: Admission,
    caller: str,
    read: Callable[[], Coroutine[Any, Any, T]],
    record: Record,
    details: dict[str, Any],
) -> T:
    """What both doors do with an allowed query: admit it (its caller's fair share), then answer once audited.

    Turned away at the door, it is audited as refused, with the status, and Refused is raised
    for the door to answer 429 or 503. `read` is called only once the query is admitted.
    """
    try:
        async with admission.slot(caller):
            return await answer_once_audited(name, read(), record("ok", details))
    except Refused as refused:
        await audit_refusal(name, record("refused", {**details, "status": refused.status}))
        raise


async def audit_refusal(name: str, record: Awaitable[object]) -> None:
    """Store the audit record of a refused query; the query stays refused when the record cannot be stored."""
    try:
        await record
    except MahavishnuError as exc:  # refused all the same: a refusal gives nothing away
        log.error("a refused query could not be audited", extra={"query": name, "reason": str(exc)})


async def answer_once_audited(name: str, read: Coroutine[Any, Any, T], record: Awaitable[object]) -> T:
    """The result of `read`, once `record` (the query's audit record) is stored; QueryError 503 if it cannot be."""
    reading = asyncio.ensure_future(read)
    try:
        await record
    except MahavishnuError as exc:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        log.error("a query could not be audited, so it was not answered", extra={"query": name, "reason": str(exc)})
        raise QueryError(503, f"{name} could not be audited, so it was not answered: {exc}") from exc
    return await reading
