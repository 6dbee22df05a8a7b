"""The code-index read model and the code queries, on a real mesh and real SQLCipher files."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest

from core.events import CommitIndexed, FileIndexed, FileRemoved, RepoAdded, RepoCommitSeen, RepoRemoved
from core.store import EventStore
from projections.checksum import content_checksum
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
    fts_query,
)
from projections.codeindex.analyse import analyse_file
from projections.codeindex.readmodel import CodeIndex
from projections.reading import QueryError, ReadModels
from projections.runner import ProjectionRunner

KEY = secrets.token_hex(32)
HASH_KEY = b"h" * 32
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key: a high-severity finding

SERVICE = f'''"""Billing service."""
import os
from decimal import Decimal

ACCESS = "{AWS_KEY}"


class Invoice:
    """An invoice, with its lines."""

    def total(self) -> Decimal:
        """Sum of the lines, rounded half-even."""
        return round_half_even(sum(self.lines))

    def send(self, to: str) -> None:
        self.render()
        mail.deliver(to, self.total())


def round_half_even(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))
'''


def analysed(path: str, text: str):  # type: ignore[no-untyped-def]
    return analyse_file(path, text.encode(), mode="redact", hash_key=HASH_KEY)


def repo_name() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


async def indexed(store: EventStore, repo: str, commit: str = "c1" * 20) -> None:
    await store.append_many(
        [
            RepoAdded(repo=repo, location="/srv/app", branch="main"),
            RepoCommitSeen(repo=repo, commit=commit),
            FileIndexed(repo=repo, commit=commit, analysis=analysed("billing/service.py", SERVICE)),
            FileIndexed(repo=repo, commit=commit, analysis=analysed("README.md", "Invoices are sent monthly.\n")),
            CommitIndexed(repo=repo, commit=commit, files_changed=2, seconds=0.5),
        ]
    )


@pytest.fixture
async def models(store: EventStore, tmp_path: Path) -> ReadModels:
    return ReadModels(tmp_path, KEY, store)


async def caught_up(store: EventStore, folder: Path) -> ProjectionRunner:
    runner = ProjectionRunner(CodeIndex(), store, directory=folder, key=KEY)
    await runner.open()
    await runner.catch_up()
    return runner


async def test_symbols_exact_and_by_prefix_with_where_they_are(store: EventStore, models: ReadModels) -> None:
    repo = repo_name()
    await indexed(store, repo)
    await (await caught_up(store, models.folder)).close()
    [exact] = (await code_symbol(models, SymbolQuery(name="total", repo=repo)))["symbols"]
    assert (exact["path"], exact["qualname"], exact["kind"], exact["line"]) == (
        "billing/service.py",
        "Invoice.total",
        "method",
        11,
    )
    assert exact["signature"].startswith("def total(self)")
    by_prefix = (await code_symbol(models, SymbolQuery(name="round_", prefix=True, repo=repo)))["symbols"]
    assert [s["qualname"] for s in by_prefix] == ["round_half_even"]
    assert (await code_symbol(models, SymbolQuery(name="round_", repo=repo)))["symbols"] == []


async def test_full_text_search_takes_any_text_and_never_shows_a_secret(store: EventStore, models: ReadModels) -> None:
    repo = repo_name()
    await indexed(store, repo)
    await (await caught_up(store, models.folder)).close()
    matches = (await code_search(models, SearchQuery(text="half-even", repo=repo)))["matches"]
    assert {m["qualname"] for m in matches} >= {"Invoice.total"}
    assert any("[[" in m["match"] for m in matches)
    for hostile in ('"', "NEAR(a b", "*", "path:x OR", "a AND", "')--", "^total"):
        await code_search(models, SearchQuery(text=hostile, repo=repo))  # no FTS syntax error reaches the caller
    leaked = await code_search(models, SearchQuery(text=AWS_KEY, repo=repo))
    assert leaked["matches"] == []
    redacted = (await code_search(models, SearchQuery(text="REDACTED", repo=repo)))["matches"]
    assert redacted and all(AWS_KEY not in m["match"] for m in redacted)
    with pytest.raises(QueryError, match="at least one word"):
        await code_search(models, SearchQuery(text="   "))


async def test_context_gives_the_source_its_calls_and_its_callers(store: EventStore, models: ReadModels) -> None:
    repo = repo_name()
    await indexed(store, repo)
    await (await caught_up(store, models.folder)).close()
    context = await code_context(models, ContextQuery(repo=repo, path="billing/service.py", symbol="round_half_even"))
    assert context["source"].startswith("def round_half_even")
    assert context["calls"] == ["value.quantize", "Decimal"]
    assert [(c["qualname"], c["line"]) for c in context["callers"]] == [("Invoice.total", 11)]
    total = await code_context(models, ContextQuery(repo=repo, path="billing/service.py", symbol="Invoice.total"))
    assert "round_half_even" in total["calls"] and any(c["qualname"] == "Invoice.send" for c in total["callers"])
    with pytest.raises(QueryError, match="no symbol 'nope'") as missing:
        await code_context(models, ContextQuery(repo=repo, path="billing/service.py", symbol="nope"))
    assert missing.value.status == 404


async def test_files_are_those_of_the_indexed_commit_and_a_new_analysis_replaces_the_old(
    store: EventStore, models: ReadModels
) -> None:
    repo = repo_name()
    await indexed(store, repo)
    second = "c2" * 20
    await store.append_many(
        [
            RepoCommitSeen(repo=repo, commit=second, previous="c1" * 20),
            FileIndexed(repo=repo, commit=second, analysis=analysed("billing/service.py", "def only():\n    pass\n")),
            FileRemoved(repo=repo, commit=second, path="README.md"),
        ]
    )
    runner = await caught_up(store, models.folder)
    repos = {r["repo"]: r for r in (await code_repos(models, ReposQuery()))["repos"]}
    assert repos[repo]["up_to_date"] is False  # seen, not indexed yet: not fresh
    await store.append(CommitIndexed(repo=repo, commit=second, previous="c1" * 20, files_changed=1, files_removed=1))
    await runner.catch_up()
    await runner.close()
    files = await code_files(models, FilesQuery(repo=repo, commit="c2c2"))
    assert [f["path"] for f in files["files"]] == ["billing/service.py"]
    assert (await code_symbol(models, SymbolQuery(name="total", repo=repo)))["symbols"] == []
    assert [s["qualname"] for s in (await code_symbol(models, SymbolQuery(name="only", repo=repo)))["symbols"]]
    with pytest.raises(QueryError, match="indexed at commit c2c2c2c2c2c2, not c1"):
        await code_files(models, FilesQuery(repo=repo, commit="c1"))
    repos = {r["repo"]: r for r in (await code_repos(models, ReposQuery()))["repos"]}
    assert repos[repo]["up_to_date"] is True and repos[repo]["files"] == 1 and repos[repo]["indexed_age_s"] >= 0


async def test_a_removed_repository_leaves_nothing_and_a_rebuild_equals_the_live_model(
    store: EventStore, models: ReadModels, tmp_path: Path
) -> None:
    kept, dropped = repo_name(), repo_name()
    await indexed(store, kept)
    await indexed(store, dropped)
    await store.append(RepoRemoved(repo=dropped))
    runner = await caught_up(store, models.folder)
    await runner.close()
    assert (await code_symbol(models, SymbolQuery(name="total", repo=dropped)))["symbols"] == []
    assert (await code_search(models, SearchQuery(text="monthly", repo=dropped)))["matches"] == []
    live = await content_checksum(runner.path, KEY)
    await runner.open()
    await runner.rebuild()
    await runner.close()
    assert await content_checksum(runner.path, KEY) == live
    raw = files_bytes(tmp_path, "code.db*")
    assert AWS_KEY.encode() not in raw and b"Invoices are sent" not in raw  # encrypted, and never the secret


def files_bytes(folder: Path, pattern: str) -> bytes:
    return b"".join(p.read_bytes() for p in folder.glob(pattern))


def test_a_users_text_becomes_quoted_terms() -> None:
    assert fts_query('total "x" NEAR(') == '"total" """x""" "NEAR("'


async def test_a_full_reindex_after_rewritten_history_drops_the_files_it_did_not_name(
    store: EventStore, models: ReadModels
) -> None:
    repo = repo_name()
    await indexed(store, repo)  # billing/service.py and README.md at c1
    rewritten = "c3" * 20
    await store.append_many(
        [
            FileIndexed(repo=repo, commit=rewritten, analysis=analysed("README.md", "Rewritten.\n")),
            CommitIndexed(repo=repo, commit=rewritten, previous="", files_changed=1),  # full: no FileRemoved events
        ]
    )
    await (await caught_up(store, models.folder)).close()
    files = await code_files(models, FilesQuery(repo=repo))
    assert [f["path"] for f in files["files"]] == ["README.md"]
    assert (await code_symbol(models, SymbolQuery(name="total", repo=repo)))["symbols"] == []
    assert (await code_search(models, SearchQuery(text="half-even", repo=repo)))["matches"] == []
