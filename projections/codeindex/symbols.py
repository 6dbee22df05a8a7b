"""Python symbols through `ast`: the module, its classes, functions and methods, and imports.

`extract_symbols(text, module=..., spans=...)` parses the text once and returns
`SymbolRecord`s (see core.events.code for what each field holds) and `ImportRecord`s, or a
`SyntaxProblem` when the text is not valid Python (the caller then indexes it as text).

Secrets: the caller passes the secret spans found in the same text. Every literal, name,
argument or import in the tree that touches a span is replaced before any record is made
(a string literal by its redacted source, evaluated again; anything else, or a literal
that no longer evaluates, by the marker), so docstrings, signatures and calls come out
redacted. The walk is iterative, because generated code can nest deeper than Python's
recursion limit.
"""

from __future__ import annotations

import ast
import re
import warnings
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from core.events.code import ImportRecord, SymbolKind, SymbolRecord
from projections.codeindex.secrets import SecretSpan, marker, redact_range
from projections.codeindex.textfiles import line_starts

__all__ = ["DOCSTRING_MAX_CHARS", "PythonSymbols", "SyntaxProblem", "extract_symbols", "module_name"]

# Docstrings go into events; a module's docstring can be a whole manual.
DOCSTRING_MAX_CHARS: Final = 4096
_MESSAGE_MAX_CHARS: Final = 200
_TRUNCATED: Final = "…"


@dataclass(frozen=True, slots=True)
class PythonSymbols:
    """What a parsable Python file defines and imports, in source order."""

    symbols: tuple[SymbolRecord, ...]
    imports: tuple[ImportRecord, ...]


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    """Why a Python file cannot be parsed: the line (0 when unknown) and Python's message."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def module_name(path: str) -> str:
    """The dotted module name of a repository path: `pkg/sub/mod.py` -> `pkg.sub.mod`.

    `__init__.py` names its package; a `src/` prefix is kept, since only the packaging
    configuration could say it is not part of the name.
    """
    parts = [part for part in path.replace("\\", "/").split("/") if part and part != "."]
    if not parts:
        return ""
    last = parts[-1]
    for suffix in (".pyi", ".py"):
        if last.endswith(suffix):
            last = last[: -len(suffix)]
            break
    parts[-1] = last
    if last == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def extract_symbols(text: str, *, module: str, spans: Sequence[SecretSpan] = ()) -> PythonSymbols | SyntaxProblem:
    """Parse `text` and list its symbols and imports, with `spans` redacted.

    Never raises for bad input: a syntax error, or code too deeply nested for the parser or
    for `ast.unparse`, gives a `SyntaxProblem` (its message quotes no source text).
    """
    try:
        with warnings.catch_warnings():
            # Invalid escape sequences and the like warn; they are the scanned code's business.
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except SyntaxError as exc:
        return SyntaxProblem(exc.lineno or 0, _short(exc.msg or "invalid syntax"))
    except (RecursionError, MemoryError):
        return SyntaxProblem(0, "nested too deeply for the parser")
    except ValueError as exc:  # e.g. NUL bytes, which textfiles already rejects
        return SyntaxProblem(0, _short(str(exc)))
    try:
        if spans:
            _TreeRedactor(text, spans).redact(tree)
        return _Collector(module, _line_count(text)).collect(tree)
    except RecursionError:
        return SyntaxProblem(0, "nested too deeply to analyse")


def _short(message: str) -> str:
    return message if len(message) <= _MESSAGE_MAX_CHARS else message[: _MESSAGE_MAX_CHARS - 1] + _TRUNCATED


def _line_count(text: str) -> int:
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


# -- Redaction of the tree ---------------------------------------------------------------


# What stands before a definition's name and before a from-import's module (after its dots;
# a module written with spaces, `from a . b import c`, is left to analyse_file's last check).
_DEF_KEYWORD: Final = re.compile(r"(?:async\s+)?(?:def|class)\s+")
_FROM_KEYWORD: Final = re.compile(r"from\s+[.\s]*")


class _TreeRedactor:
    """Replaces every leaf of the tree that touches a secret span."""

    def __init__(self, text: str, spans: Sequence[SecretSpan]) -> None:
        self._text = text
        self._spans = sorted(spans, key=lambda s: s.start)
        self._lines = text.split("\n")
        self._starts = line_starts(text)
        touched: set[int] = set()
        for span in spans:
            first = span.line
            last = first + text.count("\n", span.start, span.end)
            touched.update(range(first, last + 1))
        self._span_lines = sorted(touched)

    def redact(self, tree: ast.AST) -> None:
        for node in ast.walk(tree):
            lineno = getattr(node, "lineno", None)
            end_lineno = getattr(node, "end_lineno", None)
            if lineno is None or end_lineno is None or not self._on_span_line(lineno, end_lineno):
                continue
            start = self._offset(lineno, getattr(node, "col_offset", 0))
            end = self._offset(end_lineno, getattr(node, "end_col_offset", None) or 0)
            self._redact_node(node, start, end)

    def _redact_node(self, node: ast.AST, start: int, end: int) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            slug = self._touching(start, end)
            if slug:
                node.value = self._literal(node.value, start, end, slug)
        elif isinstance(node, ast.Name):
            node.id = self._name(node.id, start, start + len(node.id))
        elif isinstance(node, ast.Attribute):
            node.attr = self._name(node.attr, end - len(node.attr), end)
        elif isinstance(node, ast.arg | ast.keyword) and node.arg:
            # Both start with their name: `name: annotation`, `name=value`.
            node.arg = self._name(node.arg, start, start + len(node.arg))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            keyword = _DEF_KEYWORD.match(self._text, start)
            if keyword:
                node.name = self._name(node.name, keyword.end(), keyword.end() + len(node.name))
        elif isinstance(node, ast.alias):  # `name` or `name as asname`
            node.name = self._name(node.name, start, start + len(node.name))
            if node.asname:
                node.asname = self._name(node.asname, end - len(node.asname), end)
        elif isinstance(node, ast.ImportFrom) and node.module:
            keyword = _FROM_KEYWORD.match(self._text, start)
            if keyword:
                node.module = self._name(node.module, keyword.end(), keyword.end() + len(node.module))

    def _literal(self, value: str | bytes, start: int, end: int, slug: str) -> str | bytes:
        # The literal's own source with the spans redacted, evaluated again: the marker sits
        # where the value was and the rest of the string stays.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                redacted = ast.literal_eval("(" + redact_range(self._text, self._spans, start, end) + "\n)")
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            redacted = None
        if isinstance(value, str):
            return redacted if isinstance(redacted, str) else marker(slug)
        return redacted if isinstance(redacted, bytes) else marker(slug).encode()

    def _name(self, name: str, start: int, end: int) -> str:
        slug = self._touching(start, end)
        return marker(slug) if slug else name

    def _touching(self, start: int, end: int) -> str:
        """The type of the first span that overlaps [start, end), or ""."""
        for span in self._spans:
            if span.start >= end:
                break
            if span.end > start:
                return span.type
        return ""

    def _on_span_line(self, first: int, last: int) -> bool:
        index = bisect_left(self._span_lines, first)
        return index < len(self._span_lines) and self._span_lines[index] <= last

    def _offset(self, lineno: int, byte_col: int) -> int:
        # ast counts columns in UTF-8 bytes.
        line = self._lines[lineno - 1]
        column = byte_col if line.isascii() else len(line.encode("utf-8")[:byte_col].decode("utf-8", "ignore"))
        return self._starts[lineno - 1] + column


# -- Collection ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Scope:
    kind: SymbolKind
    name: str
    qualname: str
    signature: str
    docstring: str
    line_start: int
    line_end: int
    calls: dict[str, None] = field(default_factory=dict)

    def record(self) -> SymbolRecord:
        return SymbolRecord(
            kind=self.kind,
            name=self.name,
            qualname=self.qualname,
            signature=self.signature,
            docstring=self.docstring,
            line_start=self.line_start,
            line_end=self.line_end,
            calls=tuple(self.calls),
        )


@dataclass(frozen=True, slots=True)
class _Where:
    """The context a node is visited in."""

    scope: _Scope  # whose calls a call here counts for
    prefix: str  # the qualname prefix of a definition here
    in_class: bool  # a function defined here is a method


class _Collector:
    def __init__(self, module: str, line_count: int) -> None:
        self._module = module
        self._line_count = line_count
        self._scopes: list[_Scope] = []
        self._imports: list[ImportRecord] = []

    def collect(self, tree: ast.Module) -> PythonSymbols:
        top = _Scope(
            kind="module",
            name=self._module.rpartition(".")[2],
            qualname=self._module,
            signature="",
            docstring=_docstring(tree),
            line_start=1,
            line_end=max(self._line_count, 1),
        )
        self._scopes.append(top)
        where = _Where(top, "", False)
        stack: list[tuple[ast.AST, _Where]] = [(child, where) for child in reversed(tree.body)]
        while stack:
            node, where = stack.pop()
            if isinstance(node, _DEFINITIONS):
                stack.extend(reversed(self._definition(node, where)))
                continue
            if isinstance(node, ast.Call):
                callee = _callee(node.func)
                if callee:
                    where.scope.calls[callee] = None
            elif isinstance(node, ast.Import | ast.ImportFrom):
                self._import(node)
            stack.extend((child, where) for child in reversed(_children(node)))
        return PythonSymbols(tuple(scope.record() for scope in self._scopes), tuple(self._imports))

    def _import(self, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            self._imports.extend(
                ImportRecord(module=alias.name, alias=alias.asname or "", line=node.lineno) for alias in node.names
            )
            return
        self._imports.extend(
            ImportRecord(
                module=node.module or "",
                name=alias.name,
                alias=alias.asname or "",
                level=node.level,
                line=node.lineno,
            )
            for alias in node.names
        )

    def _definition(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef, where: _Where
    ) -> list[tuple[ast.AST, _Where]]:
        """Record a definition; return its children, each with the context it runs in."""
        qualname = where.prefix + node.name
        is_class = isinstance(node, ast.ClassDef)
        kind: SymbolKind = "class" if is_class else "method" if where.in_class else "function"
        scope = _Scope(
            kind=kind,
            name=node.name,
            qualname=qualname,
            signature=_signature(node),
            docstring=_docstring(node),
            line_start=min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)]),
            line_end=node.end_lineno or node.lineno,
        )
        self._scopes.append(scope)
        # Decorators, defaults, annotations and base classes run in the enclosing scope.
        body = {id(statement) for statement in node.body}
        children = [(child, where) for child in _children(node) if id(child) not in body]
        inner = _Where(scope, qualname + "." if is_class else qualname + ".<locals>.", is_class)
        children += [(statement, inner) for statement in node.body]
        return children


_DEFINITIONS: Final = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
# Nodes that can hold no call, definition or import: not worth a visit.
_LEAVES: Final = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.Name, ast.Constant)


def _children(node: ast.AST) -> list[ast.AST]:
    """The child nodes worth visiting, in source order (a leaner `ast.iter_child_nodes`)."""
    children: list[ast.AST] = []
    for name in node._fields:
        value = getattr(node, name, None)
        if isinstance(value, ast.AST):
            if not isinstance(value, _LEAVES):
                children.append(value)
        elif isinstance(value, list):
            children.extend(item for item in value if isinstance(item, ast.AST) and not isinstance(item, _LEAVES))
    return children


def _callee(func: ast.expr) -> str:
    """`a.b.c` for a chain of names; after a call or subscript only the attributes (`x().y` -> `y`)."""
    parts: list[str] = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _docstring(node: ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
    docstring = ast.get_docstring(node, clean=True) or ""
    if len(docstring) > DOCSTRING_MAX_CHARS:
        return docstring[: DOCSTRING_MAX_CHARS - 1] + _TRUNCATED
    return docstring


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> str:
    # ast.unparse gives the canonical spelling (`c: int=2`, quotes normalised) whatever the
    # layout of the source header (line breaks, comments, trailing commas).
    type_params = getattr(node, "type_params", None)  # Python 3.12's `def f[T](...)`
    generic = f"[{', '.join(ast.unparse(p) for p in type_params)}]" if type_params else ""
    if isinstance(node, ast.ClassDef):
        bases = [ast.unparse(base) for base in node.bases]
        bases += [
            f"{kw.arg}={ast.unparse(kw.value)}" if kw.arg else f"**{ast.unparse(kw.value)}" for kw in node.keywords
        ]
        return f"class {node.name}{generic}" + (f"({', '.join(bases)})" if bases else "")
    head = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    return f"{head} {node.name}{generic}({ast.unparse(node.args)}){returns}"
