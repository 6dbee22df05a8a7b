"""Snippets: symbol sources and windows of text, bounded in size, nothing of the text lost."""

from __future__ import annotations

from core.events.code import Snippet, SymbolRecord
from projections.codeindex.snippets import (
    CHUNK_LINES,
    CHUNK_MAX_CHARS,
    SYMBOL_MAX_CHARS,
    symbol_snippets,
    text_chunks,
)


def _symbol(qualname: str, start: int, end: int) -> SymbolRecord:
    return SymbolRecord(kind="function", name=qualname, qualname=qualname, line_start=start, line_end=end)


def test_a_symbol_snippet_is_its_lines() -> None:
    lines = ["import os", "", "def f():", "    return 1", "", "x = f()"]
    assert symbol_snippets(lines, [_symbol("f", 3, 4)]) == (
        Snippet(kind="symbol", qualname="f", line_start=3, line_end=4, text="def f():\n    return 1"),
    )


def test_a_long_symbol_is_cut_at_the_limit() -> None:
    lines = [f"    value_{n} = {n}" for n in range(2000)]
    (snippet,) = symbol_snippets(lines, [_symbol("big", 1, 2000)])
    assert snippet.truncated
    assert len(snippet.text) == SYMBOL_MAX_CHARS
    assert snippet.text.startswith("    value_0 = 0\n")
    assert (snippet.line_start, snippet.line_end) == (1, 2000)


def test_text_is_cut_into_windows_of_lines() -> None:
    lines = [f"line {n}" for n in range(1, 121)]
    chunks = text_chunks(lines)
    assert [(c.line_start, c.line_end) for c in chunks] == [(1, 50), (51, 100), (101, 120)]
    assert all(c.kind == "text" and not c.truncated for c in chunks)
    assert "\n".join(c.text for c in chunks) == "\n".join(lines)
    assert len(chunks[0].text.split("\n")) == CHUNK_LINES


def test_windows_close_early_at_the_size_limit_and_split_long_lines() -> None:
    wide = "w" * 3000
    minified = "m" * (2 * CHUNK_MAX_CHARS + 10)
    lines = [wide, wide, wide, minified, "tail"]
    chunks = text_chunks(lines)
    assert [(c.line_start, c.line_end, len(c.text)) for c in chunks] == [
        (1, 2, 6001),
        (3, 3, 3000),
        (4, 4, CHUNK_MAX_CHARS),
        (4, 4, CHUNK_MAX_CHARS),
        (4, 4, 10),
        (5, 5, 4),
    ]
    assert all(len(c.text) <= CHUNK_MAX_CHARS for c in chunks)


def test_blank_windows_are_left_out() -> None:
    lines = ["", "  "] * 40 + ["content"]
    assert [(c.line_start, c.line_end) for c in text_chunks(lines)] == [(51, 81)]
    assert text_chunks([]) == ()
