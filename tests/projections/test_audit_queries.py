"""audit.search over a real encrypted audit read model: newest first, paged by cursor, bounded by its window."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlcipher3

from core.audit import GENESIS, audit_hash
from core.events import AuditRecorded
from projections import audit_queries
from projections.audit import Audit
from projections.audit_queries import PAGE_MAX, AuditSearch, audit_search, next_cursor
from projections.reading import QueryError, ReadModels

KEY = secrets.token_hex(32)


def write_trail(folder: Path, count: int, target: Any = lambda seq: f"dev-{seq % 3}") -> None:
    """An audit read model of `count` chained entries, written with the projection's own schema and statements."""
    connection = sqlcipher3.connect(str(folder / "audit.db"), isolation_level=None)
    connection.execute(f"PRAGMA key = \"x'{KEY}'\"")
    for statement in Audit.schema:
        connection.execute(statement)
    previous = GENESIS
    connection.execute("BEGIN")
    for seq in range(1, count + 1):
        event = AuditRecorded(
            actor="ops-ann" if seq % 2 else "control",
            category="command",
            action="command.send",
            target=target(seq),
            details={"n": seq, "nested": {"ok": True}},
            prev_hash=previous,
        )
        previous = audit_hash(event)
        for sql, values in Audit().apply(event, seq):
            connection.execute(sql, values)
    connection.execute("COMMIT")
    connection.close()


async def search(folder: Path, **fields: Any) -> dict[str, Any]:
    document: dict[str, Any] = msgspec.json.decode(
        msgspec.json.encode(await audit_search(ReadModels(folder, KEY), AuditSearch(**fields)))
    )
    return document


async def test_a_page_is_newest_first_with_details_and_chain_state(tmp_path: Path) -> None:
    write_trail(tmp_path, 50)
    page = await search(tmp_path, limit=10)
    assert [e["seq"] for e in page["entries"]] == list(range(50, 40, -1))
    first = page["entries"][0]
    assert first["details"] == {"n": 50, "nested": {"ok": True}}
    assert first["chain_ok"] is True
    assert set(first) == {
        "seq", "at", "actor", "category", "action", "target", "outcome", "details", "hash", "prev_hash", "chain_ok"
    }  # fmt: skip
    assert page["next"] == 41


async def test_following_next_reads_every_match_once_then_stops(tmp_path: Path) -> None:
    write_trail(tmp_path, 50)
    seen: list[int] = []
    before = None
    for _ in range(20):
        page = await search(tmp_path, device="dev-1", limit=7, before=before)
        seen += [e["seq"] for e in page["entries"]]
        assert all(e["target"] == "dev-1" for e in page["entries"])
        before = page["next"]
        if before is None:
            break
    assert seen == [seq for seq in range(50, 0, -1) if seq % 3 == 1]


async def test_a_search_looks_through_one_window_and_says_where_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_queries, "SCAN_WINDOW", 10)
    write_trail(tmp_path, 45, target=lambda seq: "rare" if seq in (3, 44) else "busy")
    first = await search(tmp_path, device="rare")
    assert ([e["seq"] for e in first["entries"]], first["next"]) == ([44], 36)  # seq 36..45 looked at
    empty = await search(tmp_path, device="rare", before=first["next"])
    assert (empty["entries"], empty["next"]) == ([], 26)  # a short (here empty) page, and where to go on
    last = await search(tmp_path, device="rare", before=6)
    assert ([e["seq"] for e in last["entries"]], last["next"]) == ([3], None)


async def test_filters_combine(tmp_path: Path) -> None:
    write_trail(tmp_path, 30)
    page = await search(tmp_path, actor="control", device="dev-0", limit=100)
    assert [e["seq"] for e in page["entries"]] == [30, 24, 18, 12, 6]
    assert page["next"] is None
    assert (await search(tmp_path, action="nothing"))["entries"] == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"limit": 0}, f"limit must be 1..{PAGE_MAX}"),
        ({"limit": PAGE_MAX + 1}, f"limit must be 1..{PAGE_MAX}"),
        ({"before": 0}, "before must be a sequence number"),
    ],
)
async def test_bad_pages_are_refused_with_what_to_do(tmp_path: Path, fields: dict[str, Any], message: str) -> None:
    write_trail(tmp_path, 3)
    with pytest.raises(QueryError, match=message) as refused:
        await search(tmp_path, **fields)
    assert refused.value.status == 400


def test_the_cursor_goes_below_a_full_page_else_below_the_window() -> None:
    window = audit_queries.SCAN_WINDOW
    assert next_cursor(top=500, found=10, lowest=300, limit=10) == 300
    assert next_cursor(top=500, found=3, lowest=300, limit=10) is None  # the window reached the first entry
    assert next_cursor(top=window + 500, found=3, lowest=600, limit=10) == 500
    assert next_cursor(top=2, found=1, lowest=1, limit=1) is None  # the full page ends at the first entry
