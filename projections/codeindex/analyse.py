"""One file in, everything the code index keeps of it out: `analyse_file`.

Pure and self-contained, so that it runs in a process pool: bytes and a path in, a
`FileAnalysis` (a msgspec Struct: cheap to pickle) out, no I/O, no shared state beyond
detect-secrets' plugins, which each process builds once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final, Literal

import msgspec

from core.events.code import FileAnalysis
from projections.codeindex.secrets import PROPAGATE_MIN_LENGTH, SecretScan, scan_secrets
from projections.codeindex.snippets import symbol_snippets, text_chunks
from projections.codeindex.symbols import PythonSymbols, extract_symbols, module_name
from projections.codeindex.textfiles import DEFAULT_MAX_BYTES, Skip, classify

__all__ = ["PYTHON_SUFFIXES", "Mode", "analyse_file"]

# "redact": index everything, with secrets replaced by markers.
# "block": a file with a high-severity secret is not indexed at all (findings only).
Mode = Literal["redact", "block"]
PYTHON_SUFFIXES: Final = (".py", ".pyi")


def analyse_file(
    path: str,
    data: bytes,
    *,
    mode: Mode,
    hash_key: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> FileAnalysis:
    """Classify, scan for secrets, and extract symbols and snippets of one file.

    - Not text (binary, over `max_bytes`, invalid UTF-8): `skipped` and `reason` only.
    - Text: `findings` for every secret (type, line, severity, keyed hash of the value).
      In block mode a high-severity finding makes it `skipped="blocked-secret"`: nothing
      of the content is kept. Otherwise a Python file (`.py`, `.pyi`) gives symbols,
      imports and a snippet per symbol; one that does not parse gives `syntax_error` and
      is indexed as text; any other file gives windows of text.
    - Everything kept is redacted. As a last check every long secret value
      (`PROPAGATE_MIN_LENGTH` characters or more; the base64 runs of a multi-line one) is
      looked for in every string of the result; should one be found, the content is
      withheld (`skipped="redaction-failed"`) rather than sent on.

    Raises ValueError for an unknown mode or an empty `hash_key` (caller errors, not
    properties of the file).
    """
    if mode not in ("redact", "block"):
        raise ValueError(f"mode must be 'redact' or 'block', not {mode!r}")
    if not hash_key:
        raise ValueError("the hash key for secret findings is empty: pass the index's secret key")
    size = len(data)
    text = classify(data, max_bytes=max_bytes)
    if isinstance(text, Skip):
        return FileAnalysis(path=path, size=size, skipped=text.reason, reason=text.message)
    is_python = path.endswith(PYTHON_SUFFIXES)
    language: Literal["python", "text"] = "python" if is_python else "text"
    secrets = scan_secrets(text, path=path, hash_key=hash_key)
    lines = secrets.redacted.split("\n")
    if lines and not lines[-1]:
        lines.pop()  # the empty "line" after a final newline
    base = FileAnalysis(path=path, size=size, language=language, lines=len(lines), findings=secrets.findings)
    if mode == "block" and secrets.has_high:
        types = sorted({finding.type for finding in secrets.findings if finding.severity == "high"})
        reason = f"not indexed: high-severity secrets ({', '.join(types)}) in block mode"
        return _replace(base, skipped="blocked-secret", reason=reason)
    if not is_python:
        return _checked(_replace(base, snippets=text_chunks(lines)), text, secrets)
    parsed = extract_symbols(text, module=module_name(path), spans=secrets.spans)
    if isinstance(parsed, PythonSymbols):
        analysis = _replace(
            base, symbols=parsed.symbols, imports=parsed.imports, snippets=symbol_snippets(lines, parsed.symbols)
        )
    else:
        analysis = _replace(base, syntax_error=f"{parsed}; indexed as text", snippets=text_chunks(lines))
    return _checked(analysis, text, secrets)


def _replace(analysis: FileAnalysis, **changes: object) -> FileAnalysis:
    return msgspec.structs.replace(analysis, **changes)


# The last check looks for long pieces of each secret value. A one-line value is looked for
# whole; a multi-line one (a key block) by its runs of base64, since its armor lines
# ("-----END RSA PRIVATE KEY-----") may rightly appear elsewhere, e.g. in a parser's code.
_MULTILINE_PIECE: Final = re.compile(r"[A-Za-z0-9+/=_]{16,}")


def _leak_pieces(text: str, secrets: SecretScan) -> set[str]:
    pieces: set[str] = set()
    for span in secrets.spans:
        value = text[span.start : span.end]
        if "\n" in value:
            pieces.update(_MULTILINE_PIECE.findall(value))
        elif len(value.strip()) >= PROPAGATE_MIN_LENGTH:
            pieces.add(value.strip())
    return pieces


def _checked(analysis: FileAnalysis, text: str, secrets: SecretScan) -> FileAnalysis:
    """`analysis`, or its content withheld if a secret value survived redaction anywhere."""
    pieces = _leak_pieces(text, secrets)
    if not pieces:
        return analysis
    kept = "\0".join(_strings(analysis))
    if not any(piece in kept for piece in pieces):
        return analysis
    return FileAnalysis(
        path=analysis.path,
        size=analysis.size,
        language=analysis.language,
        lines=analysis.lines,
        findings=analysis.findings,
        skipped="redaction-failed",
        reason="content withheld: a secret value was still present after redaction",
    )


def _strings(value: object) -> Iterator[str]:
    """Every string inside a Struct, through nested Structs and tuples."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _strings(getattr(value, name))
    elif isinstance(value, tuple):
        for item in value:
            yield from _strings(item)
