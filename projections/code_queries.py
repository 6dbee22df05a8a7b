"""The code queries (`code.symbol`, `code.search`, `code.context`, `code.files`, `code.repos`) on the `code` read model.

Served like every query: over NATS (mesh.q.code.*), over HTTP (/api/code/*), and read
directly by `mahavishnu code`. Text from the index is already redacted upstream; a user's
search text is quoted term by term, so it can never be FTS5 syntax (no operators, no
column filters, no syntax errors).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from projections.reading import QueryError, ReadModels, read_rows

MAX_LIMIT = 1000


class SymbolQuery(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    prefix: bool = False
    repo: str | None = None
    limit: int = 50


class SearchQuery(msgspec.Struct, forbid_unknown_fields=True):
    text: str
    repo: str | None = None
    limit: int = 20


class ContextQuery(msgspec.Struct, forbid_unknown_fields=True):
    repo: str
    path: str
    symbol: str  # a qualname (Class.method) or a plain name


class FilesQuery(msgspec.Struct, forbid_unknown_fields=True):
    repo: str
    commit: str | None = None


class ReposQuery(msgspec.Struct, forbid_unknown_fields=True):
    pass


def capped(limit: int) -> int:
    """A limit within 1..MAX_LIMIT: a huge one is capped, not refused; a non-positive one is an error."""
    if limit < 1:
        raise QueryError(400, "bad request: limit must be at least 1")
    return min(limit, MAX_LIMIT)


def fts_query(text: str) -> str:
    """A user's text as an FTS5 query matching every term (pure): each term a quoted string."""
    terms = text.split()
    if not terms:
        raise QueryError(400, "bad request: text must hold at least one word")
    return " ".join('"' + term.replace('"', '""') + '"' for term in terms)


def _repo_clause(repo: str | None, column: str = "repo") -> tuple[str, tuple[object, ...]]:
    return (f" AND {column} = ?", (repo,)) if repo else ("", ())


async def code_symbol(models: ReadModels, request: SymbolQuery) -> dict[str, Any]:
    if not request.name:
        raise QueryError(400, "bad request: name must not be empty")
    where, params = _repo_clause(request.repo)
    bounds: tuple[str, ...]
    if request.prefix:  # a range on the indexed name column: LIKE would not use the index and treats _ and % specially
        match, bounds = "name >= ? AND name < ?", (request.name, request.name + "\U0010ffff")
    else:
        match, bounds = "name = ?", (request.name,)
    rows = await read_rows(
        models,
        "code",
        f"SELECT repo, path, line_start AS line, line_end, kind, qualname, signature FROM symbols"
        f" WHERE {match}{where} ORDER BY name, repo, path, line_start LIMIT ?",
        *bounds,
        *params,
        capped(request.limit),
    )
    return {"symbols": rows}


async def code_search(models: ReadModels, request: SearchQuery) -> dict[str, Any]:
    where, params = _repo_clause(request.repo, "s.repo")
    rows = await read_rows(
        models,
        "code",
        "SELECT s.repo, s.path, s.line_start AS line, s.line_end, s.kind, s.qualname,"
        " snippet(search, 0, '[[', ']]', '...', 16) AS match FROM search JOIN snippets s ON s.id = search.rowid"
        f" WHERE search MATCH ?{where} ORDER BY rank LIMIT ?",
        fts_query(request.text),
        *params,
        capped(request.limit),
    )
    return {"matches": rows}


async def code_context(models: ReadModels, request: ContextQuery) -> dict[str, Any]:
    found = await read_rows(
        models,
        "code",
        "SELECT repo, path, qualname, name, kind, signature, docstring, line_start, line_end, calls FROM symbols"
        " WHERE repo = ? AND path = ? AND (qualname = ? OR name = ?) ORDER BY qualname = ? DESC, line_start LIMIT 1",
        request.repo,
        request.path,
        request.symbol,
        request.symbol,
        request.symbol,
    )
    if not found:
        raise QueryError(404, f"no symbol {request.symbol!r} in {request.repo}:{request.path} (see `code symbol`)")
    symbol = found[0]
    source = await read_rows(
        models,
        "code",
        "SELECT text, truncated FROM snippets WHERE repo = ? AND path = ? AND kind = 'symbol' AND qualname = ?"
        " AND line_start = ?",
        request.repo,
        request.path,
        symbol["qualname"],
        symbol["line_start"],
    )
    name = symbol["name"]
    # Callers are found by name, as the issue asks: a call `x.save()` counts for every `save`.
    callers = await read_rows(
        models,
        "code",
        "SELECT DISTINCT c.repo, c.path, c.caller AS qualname, c.line FROM calls c"
        " WHERE c.repo = ? AND (c.callee = ? OR c.callee LIKE ? ESCAPE '\\') ORDER BY c.path, c.line LIMIT ?",
        request.repo,
        name,
        "%." + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),
        MAX_LIMIT,
    )
    return {
        "symbol": {k: v for k, v in symbol.items() if k != "calls"},
        "source": source[0]["text"] if source else "",
        "truncated": bool(source and source[0]["truncated"]),
        "calls": json.loads(symbol["calls"]),
        "callers": [c for c in callers if not (c["path"] == request.path and c["qualname"] == symbol["qualname"])],
    }


async def code_files(models: ReadModels, request: FilesQuery) -> dict[str, Any]:
    repo = await read_rows(models, "code", "SELECT indexed_commit FROM repos WHERE repo = ?", request.repo)
    if not repo:
        raise QueryError(404, f"no repository {request.repo!r} (see `code repos`)")
    indexed = repo[0]["indexed_commit"]
    if request.commit and not (indexed and indexed.startswith(request.commit)):
        shown = indexed[:12] or "none yet"
        raise QueryError(404, f"{request.repo} is indexed at commit {shown}, not {request.commit}: only it is kept")
    files = await read_rows(
        models,
        "code",
        "SELECT path, language, size, lines, skipped, reason, syntax_error FROM files WHERE repo = ? ORDER BY path",
        request.repo,
    )
    return {"repo": request.repo, "commit": indexed, "files": files}


async def code_repos(models: ReadModels, _: ReposQuery) -> dict[str, Any]:
    rows = await read_rows(
        models,
        "code",
        "SELECT r.repo, r.location, r.branch, r.seen_commit, r.indexed_commit, r.indexed_at, r.index_seconds,"
        " r.last_failure, r.failed_at, (SELECT count(*) FROM files f WHERE f.repo = r.repo) AS files,"
        " (SELECT count(*) FROM secrets s WHERE s.repo = r.repo) AS secrets FROM repos r ORDER BY r.repo",
    )
    now = datetime.now(UTC)
    for row in rows:
        # Freshness: how long the newest commit seen has waited to be queryable (0: up to date).
        waiting = row["seen_commit"] and row["seen_commit"] != row["indexed_commit"]
        row["up_to_date"] = bool(row["indexed_commit"]) and not waiting
        row["indexed_age_s"] = (
            round((now - datetime.fromisoformat(row["indexed_at"])).total_seconds(), 1) if row["indexed_at"] else None
        )
    return {"repos": rows}


CODE_QUERIES: dict[str, tuple[type[Any], Any]] = {
    "code.symbol": (SymbolQuery, code_symbol),
    "code.search": (SearchQuery, code_search),
    "code.context": (ContextQuery, code_context),
    "code.files": (FilesQuery, code_files),
    "code.repos": (ReposQuery, code_repos),
}
