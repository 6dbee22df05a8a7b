"""fit_analysis: snippets are cut before content is withheld (pure)."""

from __future__ import annotations

import msgspec

from core.events.code import FileAnalysis, SecretFinding, Snippet, SymbolRecord
from projections.codeindex.fitting import fit_analysis


def size_of(analysis: FileAnalysis) -> int:
    return len(msgspec.json.encode(analysis))


def big(snippets: int = 20, chars: int = 4000) -> FileAnalysis:
    return FileAnalysis(
        path="big.py",
        size=snippets * chars,
        language="python",
        lines=snippets * 40,
        findings=(SecretFinding(type="jwt", line=3, severity="high", value_hash="ab" * 32),),
        symbols=tuple(
            SymbolRecord(kind="function", name=f"f{i}", qualname=f"f{i}", line_start=i * 40 + 1, line_end=i * 40 + 40)
            for i in range(snippets)
        ),
        snippets=tuple(
            Snippet(kind="symbol", qualname=f"f{i}", line_start=i * 40 + 1, line_end=i * 40 + 40, text="x" * chars)
            for i in range(snippets)
        ),
    )


def test_an_analysis_that_fits_is_left_alone() -> None:
    analysis = big(2, 100)
    assert fit_analysis(analysis, budget=size_of(analysis), size_of=size_of) is analysis


def test_snippets_are_cut_progressively_and_marked() -> None:
    analysis = big()
    budget = size_of(analysis) * 6 // 10
    fitted = fit_analysis(analysis, budget=budget, size_of=size_of)
    assert size_of(fitted) <= budget
    assert fitted.skipped is None and fitted.symbols == analysis.symbols and fitted.findings == analysis.findings
    assert all(s.truncated and len(s.text) == 2048 for s in fitted.snippets)
    spans = [(s.line_start, s.line_end) for s in analysis.snippets]
    assert [(s.line_start, s.line_end) for s in fitted.snippets] == spans  # the place is kept
    tighter = fit_analysis(analysis, budget=size_of(analysis) // 10, size_of=size_of)
    assert {len(s.text) for s in tighter.snippets} <= {512, 128, 0} and tighter.skipped is None


def test_content_is_withheld_last_keeping_findings_while_they_fit() -> None:
    analysis = big(snippets=400, chars=100)  # the symbols alone are too many
    budget = 2000
    fitted = fit_analysis(analysis, budget=budget, size_of=size_of)
    assert fitted.skipped == "too-large" and "does not fit in one event of 2,000 bytes" in fitted.reason
    assert fitted.findings == analysis.findings and fitted.symbols == () and fitted.snippets == ()
    bare = fit_analysis(analysis, budget=150, size_of=size_of)
    assert bare.skipped == "too-large" and bare.findings == ()
