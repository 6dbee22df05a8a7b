"""`mahavishnu code symbol|search|context|files|repos`: the code index, read from its read model.

Like `audit search`, these read the encrypted read model on this machine with its key;
the same queries are served to other people over NATS (mesh.q.code.*) and HTTP
(/api/code/*), with roles and an audit record. `--json` prints the query's document.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from core.config import Settings
from core.errors import MahavishnuError
from mahavishnu.runtime.home import Home
from projections.code_queries import (
    ContextQuery,
    FilesQuery,
    ReposQuery,
    SearchQuery,
    SymbolQuery,
    code_context,
    code_files,
    code_repos,
    code_search,
    code_symbol,
)
from projections.database import database_key
from projections.reading import ReadModels


def add(code: argparse.ArgumentParser) -> None:
    actions = code.add_subparsers(dest="code_command", required=True, metavar="ACTION")

    symbol = actions.add_parser("symbol", help="where a Python symbol is defined (exact name, or --prefix)")
    symbol.add_argument("name")
    symbol.add_argument("--prefix", action="store_true", help="every symbol whose name starts with NAME")
    symbol.add_argument("--repo")
    symbol.add_argument("--limit", type=int, default=50)
    search = actions.add_parser("search", help="full-text search over code and docstrings (secrets redacted)")
    search.add_argument("text")
    search.add_argument("--repo")
    search.add_argument("--limit", type=int, default=20)
    context = actions.add_parser("context", help="a symbol's source, what it calls, and what calls it")
    context.add_argument("repo")
    context.add_argument("target", metavar="PATH:SYMBOL")
    files = actions.add_parser("files", help="the files of a repository at its indexed commit")
    files.add_argument("repo")
    files.add_argument("--commit", help="only if it is the indexed commit (a prefix will do)")
    actions.add_parser("repos", help="each repository's last indexed commit and freshness")
    for action, handler in (("symbol", _symbol), ("search", _search), ("context", _context), ("files", _files)):
        actions.choices[action].add_argument("--json", action="store_true", help="print the query's JSON document")
        actions.choices[action].set_defaults(handler=handler)
    actions.choices["repos"].add_argument("--json", action="store_true", help="print the query's JSON document")
    actions.choices["repos"].set_defaults(handler=_repos)


def _models(home: Home) -> ReadModels:
    return ReadModels(home.readmodels_dir, database_key(home.root, os.environ))


def _show(document: dict[str, Any], args: argparse.Namespace, lines: list[str]) -> int:
    print(json.dumps(document, indent=2) if args.json else "\n".join(lines) if lines else "(nothing found)")
    return 0


async def _symbol(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    found = await code_symbol(
        _models(home), SymbolQuery(name=args.name, prefix=args.prefix, repo=args.repo, limit=args.limit)
    )
    lines = [
        f"{s['repo']}:{s['path']}:{s['line']}  {s['kind']} {s['qualname']}  {s['signature']}" for s in found["symbols"]
    ]
    return _show(found, args, lines)


async def _search(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    found = await code_search(_models(home), SearchQuery(text=args.text, repo=args.repo, limit=args.limit))
    lines = [
        f"{m['repo']}:{m['path']}:{m['line']}  {m['qualname'] or m['kind']}\n    {' '.join(m['match'].split())}"
        for m in found["matches"]
    ]
    return _show(found, args, lines)


async def _context(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    path, _, symbol = args.target.rpartition(":")
    if not path or not symbol:
        raise MahavishnuError(f"{args.target!r}: give PATH:SYMBOL, e.g. billing/service.py:Invoice.total")
    found = await code_context(_models(home), ContextQuery(repo=args.repo, path=path, symbol=symbol))
    s = found["symbol"]
    lines = [
        f"{s['repo']}:{s['path']}:{s['line_start']}-{s['line_end']}  {s['kind']} {s['qualname']}",
        "",
        found["source"] + (" ..." if found["truncated"] else ""),
        "",
        "calls:     " + (", ".join(found["calls"]) or "-"),
        "called by: " + (", ".join(f"{c['qualname']} ({c['path']}:{c['line']})" for c in found["callers"]) or "-"),
    ]
    return _show(found, args, lines)


async def _files(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    found = await code_files(_models(home), FilesQuery(repo=args.repo, commit=args.commit))
    lines = [f"commit {found['commit']}"] + [
        f"{f['path']}  {f['lines']} lines" + (f"  skipped: {f['reason']}" if f["skipped"] else "")
        for f in found["files"]
    ]
    return _show(found, args, lines)


async def _repos(home: Home, settings: Settings, args: argparse.Namespace) -> int:
    found = await code_repos(_models(home), ReposQuery())
    lines = []
    for r in found["repos"]:
        state = "up to date" if r["up_to_date"] else f"behind (seen {r['seen_commit'][:12] or '-'})"
        failure = f"; last poll failed: {r['last_failure']}" if r["last_failure"] else ""
        lines.append(
            f"{r['repo']}  {r['location']}  indexed {r['indexed_commit'][:12] or '-'}  {r['files']} files,"
            f" {r['secrets']} secrets found  {state}{failure}"
        )
    return _show(found, args, lines)
