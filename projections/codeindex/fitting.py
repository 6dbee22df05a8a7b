"""Make one file's analysis fit in one event: cut snippet text before giving up content (pure).

A NATS message cannot exceed the server's max_payload (1 MiB by default), and a 1 MB
source file gives an analysis larger than itself (its snippets hold its text again,
plus symbols, docstrings and findings). Snippets are the part search can lose most
gracefully, so they are cut first, ever shorter, each marked `truncated`; only if the
rest still does not fit is the content withheld, keeping the file's findings when they fit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import msgspec

from core.events.code import FileAnalysis, Snippet

__all__ = ["SNIPPET_CAPS", "fit_analysis"]

# Characters of text each snippet keeps at each step; 0 keeps the snippet's place
# (kind, symbol, lines) without text.
SNIPPET_CAPS: Final = (2048, 512, 128, 0)


def fit_analysis(analysis: FileAnalysis, *, budget: int, size_of: Callable[[FileAnalysis], int]) -> FileAnalysis:
    """`analysis`, or a smaller version whose `size_of` is at most `budget` bytes.

    `size_of` measures the analysis as it will be sent (the whole event's encoding), so
    the caller decides what counts. Steps: snippets cut to each of `SNIPPET_CAPS`; then
    symbols, imports and snippets dropped (`skipped="too-large"`), keeping the findings;
    then the findings dropped as well (each secret still has its own SecretFound event).
    """
    if size_of(analysis) <= budget:
        return analysis
    for cap in SNIPPET_CAPS:
        cut = msgspec.structs.replace(analysis, snippets=tuple(_capped(snippet, cap) for snippet in analysis.snippets))
        if size_of(cut) <= budget:
            return cut
    withheld = FileAnalysis(
        path=analysis.path,
        size=analysis.size,
        language=analysis.language,
        lines=analysis.lines,
        syntax_error=analysis.syntax_error,
        findings=analysis.findings,
        skipped="too-large",
        reason=f"content withheld: its analysis does not fit in one event of {budget:,} bytes",
    )
    if size_of(withheld) <= budget:
        return withheld
    return msgspec.structs.replace(withheld, findings=())


def _capped(snippet: Snippet, cap: int) -> Snippet:
    if len(snippet.text) <= cap:
        return snippet
    return msgspec.structs.replace(snippet, text=snippet.text[:cap], truncated=True)
