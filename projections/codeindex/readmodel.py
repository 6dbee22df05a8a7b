"""The `code` read model: repositories, files, Python symbols, imports, calls, secrets found, full-text search.

Folded from the repositories' events (`mesh.evt.repo.>`), so it can be dropped and
rebuilt from the stream alone: a FileIndexed event carries the whole, already redacted,
analysis of one file, and replaces everything the model held of that file. The secrets
table holds what the analysis found (type, line, keyed hash), never a value.

Full-text search is an FTS5 table over the snippets (a symbol's source, docstring
included, or a window of a text file), its rowid being the snippet's id. Every DELETE
here is served by a PRIMARY KEY or UNIQUE constraint declared in its CREATE TABLE: a
rebuild creates the other indexes only after loading (projections.bulk_load), and a
per-file delete without one would make it quadratic.
"""

from __future__ import annotations

import msgspec

from core.events import (
    CircuitChanged,
    CommitIndexed,
    Event,
    FileIndexed,
    FileRemoved,
    RepoAdded,
    RepoCommitSeen,
    RepoPollFailed,
    RepoRemoved,
    SecretFound,
)
from core.events.code import FileAnalysis
from projections.projection import Park, Statement

_json = msgspec.json.Encoder()

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS repos ("
    " repo TEXT PRIMARY KEY, location TEXT NOT NULL, branch TEXT NOT NULL, remote INTEGER NOT NULL,"
    " added_at TEXT NOT NULL, seen_commit TEXT NOT NULL DEFAULT '', seen_at TEXT,"
    " indexed_commit TEXT NOT NULL DEFAULT '', indexed_at TEXT, index_seconds REAL, index_mode TEXT,"
    " last_failure TEXT NOT NULL DEFAULT '', failed_at TEXT)",
    "CREATE TABLE IF NOT EXISTS files ("
    " repo TEXT NOT NULL, path TEXT NOT NULL, commit_id TEXT NOT NULL, language TEXT, size INTEGER NOT NULL,"
    " lines INTEGER NOT NULL, skipped TEXT, reason TEXT NOT NULL, syntax_error TEXT NOT NULL,"
    " PRIMARY KEY (repo, path))",
    "CREATE TABLE IF NOT EXISTS symbols ("
    " repo TEXT NOT NULL, path TEXT NOT NULL, qualname TEXT NOT NULL, line_start INTEGER NOT NULL,"
    " kind TEXT NOT NULL, name TEXT NOT NULL, signature TEXT NOT NULL, docstring TEXT NOT NULL,"
    " line_end INTEGER NOT NULL, calls TEXT NOT NULL, PRIMARY KEY (repo, path, qualname, line_start))",
    "CREATE TABLE IF NOT EXISTS calls ("
    " repo TEXT NOT NULL, path TEXT NOT NULL, caller TEXT NOT NULL, line INTEGER NOT NULL, callee TEXT NOT NULL,"
    " PRIMARY KEY (repo, path, caller, line, callee))",
    "CREATE TABLE IF NOT EXISTS imports ("
    " repo TEXT NOT NULL, path TEXT NOT NULL, line INTEGER NOT NULL, module TEXT NOT NULL, name TEXT NOT NULL,"
    " alias TEXT NOT NULL, level INTEGER NOT NULL, PRIMARY KEY (repo, path, line, module, name, alias, level))",
    "CREATE TABLE IF NOT EXISTS secrets ("
    " repo TEXT NOT NULL, path TEXT NOT NULL, line INTEGER NOT NULL, type TEXT NOT NULL, severity TEXT NOT NULL,"
    " value_hash TEXT NOT NULL, commit_id TEXT NOT NULL, blocked INTEGER NOT NULL,"
    " PRIMARY KEY (repo, path, line, type, value_hash))",
    "CREATE TABLE IF NOT EXISTS snippets ("
    " id INTEGER PRIMARY KEY, repo TEXT NOT NULL, path TEXT NOT NULL, line_start INTEGER NOT NULL,"
    " line_end INTEGER NOT NULL, kind TEXT NOT NULL, qualname TEXT NOT NULL, text TEXT NOT NULL,"
    " truncated INTEGER NOT NULL, UNIQUE (repo, path, line_start, kind, qualname))",
    "CREATE VIRTUAL TABLE IF NOT EXISTS search USING fts5(body, tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE INDEX IF NOT EXISTS symbols_by_name ON symbols (name)",
    "CREATE INDEX IF NOT EXISTS symbols_by_qualname ON symbols (qualname)",
    "CREATE INDEX IF NOT EXISTS calls_by_callee ON calls (callee)",
)

_PER_FILE = ("symbols", "calls", "imports", "secrets")
_FORGET_SEARCH = "DELETE FROM search WHERE rowid IN (SELECT id FROM snippets WHERE repo = ? AND path = ?)"


def forget_file(repo: str, path: str) -> list[Statement]:
    """Everything the model holds of one file's content, deleted (its row in `files` aside)."""
    return [
        (_FORGET_SEARCH, (repo, path)),
        ("DELETE FROM snippets WHERE repo = ? AND path = ?", (repo, path)),
        *((f"DELETE FROM {table} WHERE repo = ? AND path = ?", (repo, path)) for table in _PER_FILE),
    ]


def file_statements(repo: str, commit: str, analysis: FileAnalysis) -> list[Statement]:
    """The rows of one analysed file (pure)."""
    path = analysis.path
    statements: list[Statement] = [
        *forget_file(repo, path),
        (
            "INSERT OR REPLACE INTO files (repo, path, commit_id, language, size, lines, skipped, reason, syntax_error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                repo,
                path,
                commit,
                analysis.language,
                analysis.size,
                analysis.lines,
                analysis.skipped,
                analysis.reason,
                analysis.syntax_error,
            ),
        ),
    ]
    for symbol in analysis.symbols:
        statements.append(
            (
                "INSERT OR REPLACE INTO symbols"
                " (repo, path, qualname, line_start, kind, name, signature, docstring, line_end, calls)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    repo,
                    path,
                    symbol.qualname,
                    symbol.line_start,
                    symbol.kind,
                    symbol.name,
                    symbol.signature,
                    symbol.docstring,
                    symbol.line_end,
                    _json.encode(list(symbol.calls)).decode(),
                ),
            )
        )
        statements.extend(
            (
                "INSERT OR IGNORE INTO calls (repo, path, caller, line, callee) VALUES (?, ?, ?, ?, ?)",
                (repo, path, symbol.qualname, symbol.line_start, callee),
            )
            for callee in symbol.calls
        )
    statements.extend(
        (
            "INSERT OR IGNORE INTO imports (repo, path, line, module, name, alias, level) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (repo, path, i.line, i.module, i.name, i.alias, i.level),
        )
        for i in analysis.imports
    )
    blocked = int(analysis.skipped == "blocked-secret")
    statements.extend(
        (
            "INSERT OR IGNORE INTO secrets (repo, path, line, type, severity, value_hash, commit_id, blocked)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (repo, path, f.line, f.type, f.severity, f.value_hash, commit, blocked),
        )
        for f in analysis.findings
    )
    statements.extend(
        (
            "INSERT OR REPLACE INTO snippets (repo, path, line_start, line_end, kind, qualname, text, truncated)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (repo, path, s.line_start, s.line_end, s.kind, s.qualname, s.text, int(s.truncated)),
        )
        for s in analysis.snippets
    )
    if analysis.snippets:
        statements.append(
            (
                "INSERT INTO search (rowid, body) SELECT id, text FROM snippets WHERE repo = ? AND path = ?",
                (repo, path),
            )
        )
    return statements


def forget_stale(repo: str, commit: str) -> list[Statement]:
    """Everything of the files of `repo` that the full index of `commit` did not name (pure)."""
    older = "SELECT path FROM files WHERE repo = ? AND commit_id != ?"
    return [
        (
            f"DELETE FROM search WHERE rowid IN (SELECT id FROM snippets WHERE repo = ? AND path IN ({older}))",
            (repo, repo, commit),
        ),
        *(
            (f"DELETE FROM {table} WHERE repo = ? AND path IN ({older})", (repo, repo, commit))
            for table in ("snippets", *_PER_FILE)
        ),
        ("DELETE FROM files WHERE repo = ? AND commit_id != ?", (repo, commit)),
    ]


class CodeIndex:
    name: str = "code"
    version: int = 1
    sources: tuple[str, ...] = ("mesh.evt.repo.>",)
    schema: tuple[str, ...] = SCHEMA

    def apply(self, event: Event, seq: int) -> list[Statement]:
        at = event.occurred_at.isoformat()
        match event:
            case FileIndexed(repo=repo, commit=commit, analysis=analysis):
                return file_statements(repo, commit, analysis)
            case FileRemoved(repo=repo, path=path):
                return [*forget_file(repo, path), ("DELETE FROM files WHERE repo = ? AND path = ?", (repo, path))]
            case RepoAdded():
                return [
                    (
                        "INSERT OR REPLACE INTO repos (repo, location, branch, remote, added_at)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (event.repo, event.location, event.branch, int(event.remote), at),
                    )
                ]
            case RepoRemoved(repo=repo):
                return [
                    (_FORGET_SEARCH.replace(" AND path = ?", ""), (repo,)),
                    *((f"DELETE FROM {table} WHERE repo = ?", (repo,)) for table in ("snippets", "files", *_PER_FILE)),
                    ("DELETE FROM repos WHERE repo = ?", (repo,)),
                ]
            case RepoCommitSeen(repo=repo, commit=commit):
                return [("UPDATE repos SET seen_commit = ?, seen_at = ? WHERE repo = ?", (commit, at, repo))]
            case RepoPollFailed(repo=repo, reason=reason):
                return [("UPDATE repos SET last_failure = ?, failed_at = ? WHERE repo = ?", (reason, at, repo))]
            case CommitIndexed():
                # A full index (the first, or after history was rewritten) names every file of the
                # commit; whatever an older commit left and this one did not name is gone.
                stale = forget_stale(event.repo, event.commit) if not event.previous else []
                return [
                    *stale,
                    (
                        "UPDATE repos SET indexed_commit = ?, indexed_at = ?, index_seconds = ?, index_mode = ?,"
                        " last_failure = '' WHERE repo = ?",
                        (event.commit, at, event.seconds, event.mode, event.repo),
                    ),
                ]
            case SecretFound() | CircuitChanged():
                return []  # the findings came with their file's analysis; breakers are metrics and events only
            case _:
                raise Park(f"{event.tag} is not an event of the code index")
