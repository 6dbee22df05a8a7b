"""Python symbols through ast: kinds, qualified names, signatures, docstrings, spans, imports, calls."""

from __future__ import annotations

import random
import textwrap

import pytest

from core.events.code import ImportRecord, SymbolRecord
from projections.codeindex.secrets import find_secrets
from projections.codeindex.symbols import (
    DOCSTRING_MAX_CHARS,
    PythonSymbols,
    SyntaxProblem,
    extract_symbols,
    module_name,
)
from tests.projections.codeindex import samples

SOURCE = textwrap.dedent(
    '''\
    """Orders: placing and cancelling them."""

    import os.path as osp
    import json, logging
    from . import models
    from ..billing import invoice as make_invoice
    from typing import (
        Any,
        ClassVar,
    )

    log = logging.getLogger(__name__)


    @register(name=slug("orders"))
    class OrderService(Base, metaclass=Registry):
        """Places orders."""

        kind: ClassVar[str] = default_kind()

        def place(self, item: str, /, qty: int = 1, *extra: Any, dry_run: bool = False, **meta: Any) -> int:
            """Place one order.

            Returns its number.
            """
            number = self.store.next_number()
            json.dumps({"item": item})
            self.store.next_number()
            make_invoice(number).send()
            return number

        @staticmethod
        async def cancel(number: int, reason: str = make_reason()) -> None:
            def audit(event):
                import hashlib
                log.info("cancelled %s", hashlib.sha256(event).hexdigest())

            await audit(number)

        class Config:
            def load(self):
                return (lambda path: osp.join(path, "x"))(os.getcwd())


    def main() -> None:
        OrderService().place("book")
    '''
)


@pytest.fixture(scope="module")
def parsed() -> PythonSymbols:
    result = extract_symbols(SOURCE, module="shop.orders")
    assert isinstance(result, PythonSymbols)
    return result


def _by_qualname(parsed: PythonSymbols) -> dict[str, SymbolRecord]:
    return {symbol.qualname: symbol for symbol in parsed.symbols}


def test_every_definition_is_listed_in_source_order_with_its_kind(parsed: PythonSymbols) -> None:
    assert [(s.kind, s.qualname) for s in parsed.symbols] == [
        ("module", "shop.orders"),
        ("class", "OrderService"),
        ("method", "OrderService.place"),
        ("method", "OrderService.cancel"),
        ("function", "OrderService.cancel.<locals>.audit"),
        ("class", "OrderService.Config"),
        ("method", "OrderService.Config.load"),
        ("function", "main"),
    ]
    assert [s.name for s in parsed.symbols][:3] == ["orders", "OrderService", "place"]


def test_signatures_are_the_canonical_source_of_the_header(parsed: PythonSymbols) -> None:
    symbols = _by_qualname(parsed)
    assert symbols["OrderService"].signature == "class OrderService(Base, metaclass=Registry)"
    assert symbols["OrderService.place"].signature == (
        "def place(self, item: str, /, qty: int=1, *extra: Any, dry_run: bool=False, **meta: Any) -> int"
    )
    assert (
        symbols["OrderService.cancel"].signature == "async def cancel(number: int, reason: str=make_reason()) -> None"
    )
    assert symbols["OrderService.Config"].signature == "class Config"
    assert symbols["OrderService.cancel.<locals>.audit"].signature == "def audit(event)"
    assert symbols["shop.orders"].signature == ""


def test_docstrings_are_cleaned(parsed: PythonSymbols) -> None:
    symbols = _by_qualname(parsed)
    assert symbols["shop.orders"].docstring == "Orders: placing and cancelling them."
    assert symbols["OrderService.place"].docstring == "Place one order.\n\nReturns its number."
    assert symbols["main"].docstring == ""


def test_spans_run_from_the_first_decorator_to_the_last_line(parsed: PythonSymbols) -> None:
    symbols = _by_qualname(parsed)
    lines = SOURCE.split("\n")
    service = symbols["OrderService"]
    assert lines[service.line_start - 1] == '@register(name=slug("orders"))'
    assert lines[service.line_end - 1].strip() == 'return (lambda path: osp.join(path, "x"))(os.getcwd())'
    cancel = symbols["OrderService.cancel"]
    assert lines[cancel.line_start - 1].strip() == "@staticmethod"
    assert lines[cancel.line_end - 1].strip() == "await audit(number)"
    assert (symbols["shop.orders"].line_start, symbols["shop.orders"].line_end) == (1, SOURCE.count("\n"))


def test_imports_are_listed_one_name_each_including_nested_ones(parsed: PythonSymbols) -> None:
    assert parsed.imports == (
        ImportRecord(module="os.path", alias="osp", line=3),
        ImportRecord(module="json", line=4),
        ImportRecord(module="logging", line=4),
        ImportRecord(module="", name="models", level=1, line=5),
        ImportRecord(module="billing", name="invoice", alias="make_invoice", level=2, line=6),
        ImportRecord(module="typing", name="Any", line=7),
        ImportRecord(module="typing", name="ClassVar", line=7),
        ImportRecord(module="hashlib", line=35),
    )


def test_calls_belong_to_the_scope_whose_body_makes_them(parsed: PythonSymbols) -> None:
    calls = {symbol.qualname: symbol.calls for symbol in parsed.symbols}
    # Decorators and base classes run in the enclosing scope: the module.
    assert calls["shop.orders"] == ("logging.getLogger", "register", "slug")
    # A method's default values are computed in the class body.
    assert calls["OrderService"] == ("default_kind", "make_reason")
    # Each once, in order of appearance; after a call only the attributes.
    assert calls["OrderService.place"] == ("self.store.next_number", "json.dumps", "send", "make_invoice")
    assert calls["OrderService.cancel"] == ("audit",)
    assert calls["OrderService.cancel.<locals>.audit"] == ("log.info", "hexdigest", "hashlib.sha256")
    assert calls["OrderService.Config.load"] == ("osp.join", "os.getcwd")
    assert calls["main"] == ("place", "OrderService")


def test_default_values_are_called_in_the_enclosing_scope() -> None:
    result = extract_symbols("class C:\n    def f(self, x=compute()):\n        pass\n", module="m")
    assert isinstance(result, PythonSymbols)
    assert {s.qualname: s.calls for s in result.symbols} == {"m": (), "C": ("compute",), "C.f": ()}


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("pkg/sub/mod.py", "pkg.sub.mod"),
        ("pkg/sub/__init__.py", "pkg.sub"),
        ("__init__.py", "__init__"),
        ("setup.py", "setup"),
        ("./src/app/types.pyi", "src.app.types"),
        ("scripts/run", "scripts.run"),
    ],
)
def test_module_names_come_from_the_path(path: str, name: str) -> None:
    assert module_name(path) == name


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("def f(:\n    pass\n", 1, "invalid syntax"),
        ("x = 1\ny = (\n", 2, "'(' was never closed"),
        ("def f():\nreturn 1\n", 2, "expected an indented block after function definition on line 1"),
        ("print 'hello'\n", 1, "Missing parentheses in call to 'print'. Did you mean print(...)?"),
    ],
)
def test_a_syntax_error_gives_its_line_and_message(source: str, line: int, message: str) -> None:
    result = extract_symbols(source, module="m")
    assert result == SyntaxProblem(line, message)
    assert str(result) == f"line {line}: {message}"


def test_deeply_nested_code_is_a_problem_not_a_crash() -> None:
    result = extract_symbols("x = " + "(" * 300 + ")" * 300 + "\n", module="m")
    assert isinstance(result, SyntaxProblem)
    chain = extract_symbols("x = " + " + ".join(["1"] * 20_000) + "\n", module="m")
    assert isinstance(chain, PythonSymbols | SyntaxProblem)


def test_the_scanned_code_s_own_warnings_stay_quiet() -> None:
    # "\d" is an invalid escape sequence (a DeprecationWarning); pytest makes warnings errors.
    result = extract_symbols('PATTERN = "\\d+"\n', module="m")
    assert isinstance(result, PythonSymbols)


def test_long_docstrings_are_cut() -> None:
    result = extract_symbols(f'"""{"word " * 2000}"""\n', module="m")
    assert isinstance(result, PythonSymbols)
    assert len(result.symbols[0].docstring) == DOCSTRING_MAX_CHARS
    assert result.symbols[0].docstring.endswith("…")


# -- Redaction -------------------------------------------------------------------------------


def _redacted(source: str) -> tuple[PythonSymbols, str]:
    result = extract_symbols(source, module="m", spans=find_secrets(source, path="m.py"))
    assert isinstance(result, PythonSymbols)
    strings = [
        text
        for symbol in result.symbols
        for text in (symbol.name, symbol.qualname, symbol.signature, symbol.docstring, *symbol.calls)
    ]
    strings += [text for record in result.imports for text in (record.module, record.name, record.alias)]
    return result, "\n".join(strings)


def test_secrets_in_docstrings_defaults_and_decorators_are_redacted() -> None:
    rng = random.Random(3)
    token, aws, jwt = samples.github_token(rng).value, samples.aws_access_key(rng).value, samples.jwt(rng).value
    source = textwrap.dedent(
        f'''\
        @auth(header="Bearer {jwt}")
        def connect(greeting="grüße", token="{token}", key={aws}):
            """Connects with {token}.

            The old key was {aws}.
            """
            return open_session(token, "{aws}")
        '''
    )
    result, strings = _redacted(source)
    for value in (token, aws, jwt):
        assert value not in strings
    connect = result.symbols[1]
    assert connect.signature == (
        "def connect(greeting='grüße', token='[REDACTED:github-token]', key=[REDACTED:aws-access-key])"
    )
    assert connect.docstring == "Connects with [REDACTED:github-token].\n\nThe old key was [REDACTED:aws-access-key]."
    assert result.symbols[0].calls == ("auth",)


def test_secret_shaped_identifiers_are_redacted_too() -> None:
    aws = samples.aws_access_key(random.Random(4)).value
    source = f"import {aws}\nfrom {aws} import {aws} as {aws}\n\ndef {aws}({aws}):\n    return {aws}.{aws}({aws}=1)\n"
    result, strings = _redacted(source)
    assert aws not in strings
    assert result.symbols[1].qualname == "[REDACTED:aws-access-key]"


def test_a_private_key_in_a_docstring_is_redacted_as_one_block() -> None:
    key = samples.private_keys()["ec"].strip()
    source = 'def load():\n    """Test key:\n\n' + textwrap.indent(key, "    ") + '\n    """\n'
    result, strings = _redacted(source)
    for piece in samples.Sample("private-key", key, source).pieces():
        assert piece not in strings
    assert result.symbols[1].docstring.startswith("Test key:\n\n[REDACTED:private-key]")


def test_a_secret_in_an_f_string_default_is_redacted() -> None:
    token = samples.github_token(random.Random(5)).value
    result, strings = _redacted(f'def call(header=f"token {token} for {{user}}"):\n    pass\n')
    assert token not in strings
    assert "[REDACTED:github-token]" in result.symbols[1].signature
