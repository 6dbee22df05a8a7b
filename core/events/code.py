"""Plain records of the code index: what one source file holds, every secret already redacted.

These are data, not events. The code index's events embed them, so they follow the same
schema-evolution rules as events: a new field gets a default and a field's type never
changes. Nothing here may ever hold a secret value: a secret is described by its type,
line and a keyed hash (`SecretFinding`), and text carries `[REDACTED:<type>]` in its place.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "FileAnalysis",
    "ImportRecord",
    "Language",
    "SecretFinding",
    "Severity",
    "SkipReason",
    "Snippet",
    "SnippetKind",
    "SymbolKind",
    "SymbolRecord",
]

# high: the shape of a specific credential (a provider's key prefix, a PEM private key, a
# password in a URL), nearly always real. low: heuristics (secret-sounding names, entropy,
# public IP addresses) that are often false alarms. Block mode refuses files with a high one.
Severity = Literal["high", "low"]
SymbolKind = Literal["module", "class", "function", "method"]
SnippetKind = Literal["symbol", "text"]
Language = Literal["python", "text"]
# Why a file's content is not indexed at all. "redaction-failed" is a safety net: a secret
# value was still found in the result after redaction, so the content is withheld.
SkipReason = Literal["binary", "too-large", "invalid-utf-8", "blocked-secret", "redaction-failed"]


class SecretFinding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A secret found in a file, without its value.

    `type` is a short slug (`aws-access-key`, `private-key`, `basic-auth-url`, ...), the same
    one that stands in the redacted text. `value_hash` is the hex HMAC-SHA256 of the value
    under the index's key: equal values give equal hashes (so one leaked key can be traced
    across files and commits), and without the key nobody can test a guess against it.
    """

    type: str
    line: int  # 1-based: where the value starts
    severity: Severity
    value_hash: str


class ImportRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One imported name.

    `import a.b as c` gives module="a.b", name="", alias="c";
    `from ..pkg import x as y` gives module="pkg", name="x", alias="y", level=2.
    """

    module: str
    name: str = ""
    alias: str = ""
    level: int = 0  # leading dots of a relative import
    line: int


class SymbolRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A Python module, class, function or method.

    `qualname` is relative to the module (`Class.method`, `outer.<locals>.inner`, as Python's
    own `__qualname__`), except for the module itself, whose qualname is its dotted name.
    `signature` is the header as source text (`def f(a, b=1, *args, **kw) -> int`,
    `class C(Base, metaclass=M)`), empty for a module. `calls` are the names called
    directly in the symbol's own body (not in nested functions or classes), by simple or
    dotted name (`print`, `self.save`, `os.path.join`; after a call or subscript only the
    attributes: `make().send()` gives `send` and `make`), each once, outer calls first.
    The span starts at the first decorator, so a snippet of it shows them.
    """

    kind: SymbolKind
    name: str
    qualname: str
    signature: str = ""
    docstring: str = ""
    line_start: int
    line_end: int
    calls: tuple[str, ...] = ()


class Snippet(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Redacted text for full-text search: a symbol's source, or a window of a text file.

    `truncated` says the text was cut at the snippet size limit.
    """

    kind: SnippetKind
    qualname: str = ""  # the symbol's, for kind "symbol"
    line_start: int
    line_end: int
    text: str
    truncated: bool = False


class FileAnalysis(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Everything the code index keeps of one file's content, all of it redacted.

    A skipped file (`skipped` set) has no symbols and no snippets; `reason` says why in
    words. A Python file that does not parse has `syntax_error` set and is indexed as text.
    `findings` are kept even for a skipped file whose text was scanned (block mode).
    """

    path: str
    size: int  # bytes
    language: Language | None = None  # None when the bytes are not text
    skipped: SkipReason | None = None
    reason: str = ""
    syntax_error: str = ""
    lines: int = 0
    findings: tuple[SecretFinding, ...] = ()
    symbols: tuple[SymbolRecord, ...] = ()
    imports: tuple[ImportRecord, ...] = ()
    snippets: tuple[Snippet, ...] = ()
