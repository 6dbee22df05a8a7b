"""The code index's pure building blocks: what one file holds, with its secrets redacted.

`analyse_file(path, data, mode=..., hash_key=...)` is the whole of it for a caller: it runs
in a process pool worker and returns a `core.events.code.FileAnalysis`. The parts:

- `textfiles`: text or not (binary, too large, invalid UTF-8), decoded with `\\n` lines.
- `secrets`: detect-secrets' default plugins (run fast) plus our own detectors; typed,
  graded findings with a keyed hash of each value; redaction to `[REDACTED:<type>]`.
- `symbols`: Python modules, classes, functions and methods through `ast`, with
  signatures, docstrings, spans, imports and calls, redacted.
- `snippets`: redacted symbol sources and windows of text for full-text search.

No module above does I/O or imports NATS; nothing here keeps a secret value.

Indexing commits is I/O, in modules imported by name and not re-exported here, so that the
pool's workers (which import `worker`, and so this package) load neither pygit2 nor NATS:
`gitread` (pygit2: files of a commit, change sets), `indexer.Indexer` (a commit into events),
`keys.code_hash_key` (the hash key file), `worker` (what a pool process runs), `fitting`
(an analysis cut to fit one event), `errors`.
"""

from projections.codeindex.analyse import Mode, analyse_file
from projections.codeindex.secrets import (
    SEVERITY,
    SecretScan,
    SecretSpan,
    find_secrets,
    keyed_hash,
    redact,
    scan_secrets,
)
from projections.codeindex.snippets import symbol_snippets, text_chunks
from projections.codeindex.symbols import PythonSymbols, SyntaxProblem, extract_symbols, module_name
from projections.codeindex.textfiles import DEFAULT_MAX_BYTES, Skip, classify

__all__ = [
    "DEFAULT_MAX_BYTES",
    "SEVERITY",
    "Mode",
    "PythonSymbols",
    "SecretScan",
    "SecretSpan",
    "Skip",
    "SyntaxProblem",
    "analyse_file",
    "classify",
    "extract_symbols",
    "find_secrets",
    "keyed_hash",
    "module_name",
    "redact",
    "scan_secrets",
    "symbol_snippets",
    "text_chunks",
]
