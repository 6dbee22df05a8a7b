"""`audit.search`: the audit read model's entries, newest first, a bounded page at a time.

Every query served is audited, so a dashboard polling the trail both reads and grows it:
this is the hottest query of all. Its answer is therefore built by SQLite itself
(json_object per row, json_group_array over the page) and handed to the doors as one
msgspec.Raw document: the rows never become Python objects, and the work runs in the
reader thread without the interpreter lock, beside the event loop instead of in it.

A search never examines more than SCAN_WINDOW sequence numbers, whatever its filter:
the entries below `before` (the end of the trail when absent) down to SCAN_WINDOW
earlier. The actor and device filters walk their (column, seq) index inside that range,
so a search costs its page, not the trail's size. The answer's `next` says where the
following page starts: the last entry's seq when the page is full, or the bottom of the
window when the window ran out first (the page may then be short, even empty). It is
null once the trail is exhausted. A caller pages with `before=<next>`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from projections.reading import QueryError, ReadModels, read_rows

PAGE_MAX = 1000
SCAN_WINDOW = 100_000

_COLUMNS = ("seq", "at", "actor", "category", "action", "target", "outcome", "hash", "prev_hash")
# An entry as the doors answer it: the stored columns, details as JSON, chain_ok as a boolean.
_ENTRY = (
    "json_object("
    + ", ".join(f"'{column}', {column}" for column in _COLUMNS)
    + ", 'details', json(details), 'chain_ok', json(iif(chain_ok, 'true', 'false')))"
)
# The top of the window: below `before`, or past the newest entry.
_TOP = "coalesce(:before, (SELECT max(seq) FROM audit) + 1, 1)"


class AuditSearch(msgspec.Struct, forbid_unknown_fields=True):
    actor: str | None = None
    device: str | None = None  # the entry's target
    action: str | None = None
    since: str | None = None  # ISO-8601
    until: str | None = None
    before: int | None = None  # a cursor: only entries older than this seq (a previous answer's `next`)
    limit: int = 100


def audit_filter(request: AuditSearch) -> tuple[str, dict[str, object]]:
    """The conditions of a search beyond its window, as SQL and named parameters (pure)."""
    conditions: list[str] = []
    params: dict[str, object] = {}
    for name, column, value, operator in (
        ("actor", "actor", request.actor, "="),
        ("device", "target", request.device, "="),
        ("action", "action", request.action, "="),
        ("since", "at", request.since, ">="),
        ("until", "at", request.until, "<="),
    ):
        if value is not None:
            conditions.append(f"{column} {operator} :{name}")
            params[name] = value
    return "".join(f" AND {condition}" for condition in conditions), params


def search_statement(request: AuditSearch) -> tuple[str, dict[str, object]]:
    """The one statement of a search: (window top, entries in the page, lowest seq in it, the entries as JSON) (pure).

    The page's order is the subquery's (newest first): SQLite aggregates a subquery's rows
    in the order it yields them; tests/projections/test_audit_queries.py holds it to that.
    """
    conditions, params = audit_filter(request)
    sql = (
        f"SELECT {_TOP}, count(*), min(seq), json_group_array({_ENTRY}) FROM ("
        f" SELECT * FROM audit WHERE seq < {_TOP} AND seq >= {_TOP} - {SCAN_WINDOW}{conditions}"
        " ORDER BY seq DESC LIMIT :limit)"
    )
    return sql, {**params, "before": request.before, "limit": request.limit}


def next_cursor(top: int, found: int, lowest: int | None, limit: int) -> int | None:
    """Where the following page starts (pure): below a full page, else below the window, else nowhere."""
    if found == limit and lowest is not None:
        return lowest if lowest > 1 else None
    bottom = top - SCAN_WINDOW
    return bottom if bottom > 1 else None


async def audit_search(models: ReadModels, request: AuditSearch) -> msgspec.Raw:
    """A page of entries, newest first, and the cursor to the next: {"entries": [...], "next": seq | null}."""
    if not 1 <= request.limit <= PAGE_MAX:
        raise QueryError(400, f"bad request: limit must be 1..{PAGE_MAX}; page with `before` for more")
    if request.before is not None and request.before < 1:
        raise QueryError(400, "bad request: before must be a sequence number (1 or more), a previous answer's `next`")
    sql, params = search_statement(request)
    [row] = await read_rows(models, "audit", sql, **params)
    top, found, lowest, entries = row.values()
    cursor = next_cursor(top, found, lowest, request.limit)
    return msgspec.Raw(b'{"entries":' + entries.encode() + b',"next":' + msgspec.json.encode(cursor) + b"}")


AUDIT_QUERIES: dict[str, tuple[type[Any], Any]] = {"audit.search": (AuditSearch, audit_search)}
