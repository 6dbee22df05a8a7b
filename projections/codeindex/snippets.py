"""Cut redacted text into snippets for full-text search.

Two kinds: the source of each Python symbol (decorators to last line), cut at
`SYMBOL_MAX_CHARS`; and for other text files (and Python that does not parse) windows of
`CHUNK_LINES` lines, closed early at `CHUNK_MAX_CHARS` so that a minified file still gives
bounded snippets; a single longer line is split over several snippets. Nothing of the text
is dropped from the chunks; windows of blank lines only are left out.

The input must already be redacted (`secrets.redact` keeps line numbers, so symbol spans
still fit). Sizes are in characters, not bytes: 4,096 characters of source are at most
16 KiB of UTF-8, usually 4 KiB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from core.events.code import Snippet, SymbolRecord

__all__ = ["CHUNK_LINES", "CHUNK_MAX_CHARS", "SYMBOL_MAX_CHARS", "symbol_snippets", "text_chunks"]

SYMBOL_MAX_CHARS: Final = 4096
CHUNK_LINES: Final = 50
CHUNK_MAX_CHARS: Final = 8192


def symbol_snippets(lines: Sequence[str], symbols: Sequence[SymbolRecord]) -> tuple[Snippet, ...]:
    """The redacted source of each symbol (`lines` are the file's redacted lines)."""
    snippets = []
    for symbol in symbols:
        text, truncated = _capped_join(lines, symbol.line_start - 1, symbol.line_end, SYMBOL_MAX_CHARS)
        snippets.append(
            Snippet(
                kind="symbol",
                qualname=symbol.qualname,
                line_start=symbol.line_start,
                line_end=symbol.line_end,
                text=text,
                truncated=truncated,
            )
        )
    return tuple(snippets)


def _capped_join(lines: Sequence[str], first: int, stop: int, cap: int) -> tuple[str, bool]:
    # Join lines[first:stop] but stop reading once past the cap: a module's snippet must
    # not cost a join of the whole file.
    pieces: list[str] = []
    size = 0
    for index in range(max(first, 0), min(stop, len(lines))):
        line = lines[index]
        size += len(line) + (1 if pieces else 0)
        pieces.append(line)
        if size > cap:
            return "\n".join(pieces)[:cap], True
    return "\n".join(pieces), False


def text_chunks(lines: Sequence[str]) -> tuple[Snippet, ...]:
    """Windows of the redacted `lines` (see the module's docstring)."""
    chunks: list[Snippet] = []
    pending: list[str] = []
    first = 1  # line number of pending[0]
    size = 0

    def flush() -> None:
        nonlocal pending, size
        if pending and any(line.strip() for line in pending):
            text = "\n".join(pending)
            chunks.append(Snippet(kind="text", line_start=first, line_end=first + len(pending) - 1, text=text))
        pending, size = [], 0

    for number, line in enumerate(lines, start=1):
        if len(line) > CHUNK_MAX_CHARS:
            flush()
            for offset in range(0, len(line), CHUNK_MAX_CHARS):
                piece = line[offset : offset + CHUNK_MAX_CHARS]
                chunks.append(Snippet(kind="text", line_start=number, line_end=number, text=piece))
            first = number + 1
            continue
        if len(pending) == CHUNK_LINES or size + len(line) + 1 > CHUNK_MAX_CHARS:
            flush()
        if not pending:
            first = number
        pending.append(line)
        size += len(line) + 1
    flush()
    return tuple(chunks)
