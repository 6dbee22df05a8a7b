"""analyse_file: one file in, a redacted FileAnalysis out, whatever the file holds."""

from __future__ import annotations

import multiprocessing
import pickle
import random
from concurrent.futures import ProcessPoolExecutor

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.events.code import FileAnalysis, SymbolRecord
from projections.codeindex import analyse as analyse_module
from projections.codeindex.analyse import analyse_file
from projections.codeindex.symbols import PythonSymbols
from tests.projections.codeindex import samples
from tests.projections.codeindex.samples import SAMPLERS, Sample

KEY = b"index-hash-key"


def _analyse(path: str, text: str | bytes, mode: analyse_module.Mode = "redact") -> FileAnalysis:
    data = text.encode() if isinstance(text, str) else text
    return analyse_file(path, data, mode=mode, hash_key=KEY)


# -- Files that are not indexed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason", "words"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "binary", "binary content"),
        (b"x" * (1024 * 1024 + 1), "too-large", "over the 1,048,576-byte limit"),
        (b"name = 'caf\xe9'\n", "invalid-utf-8", "not valid UTF-8"),
    ],
)
def test_bytes_that_are_not_indexable_text_give_a_reason_and_nothing_else(data: bytes, reason: str, words: str) -> None:
    analysis = _analyse("assets/file.py", data)
    assert analysis.skipped == reason
    assert words in analysis.reason
    assert analysis.language is None
    assert (analysis.findings, analysis.symbols, analysis.snippets) == ((), (), ())
    assert analysis.size == len(data)


def test_block_mode_keeps_nothing_of_a_file_with_a_high_severity_secret() -> None:
    sample = samples.aws_access_key(random.Random(1))
    text = samples.python_module(random.Random(1)) + sample.code + "\n"
    analysis = _analyse("app/settings.py", text, mode="block")
    assert analysis.skipped == "blocked-secret"
    assert analysis.reason == "not indexed: high-severity secrets (aws-access-key) in block mode"
    assert [(f.type, f.severity) for f in analysis.findings] == [("aws-access-key", "high")]
    assert (analysis.symbols, analysis.imports, analysis.snippets) == ((), (), ())
    assert sample.value not in repr(analysis)


def test_block_mode_indexes_a_file_with_low_severity_findings_only() -> None:
    sample = samples.password_assignment(random.Random(2))
    analysis = _analyse("app/settings.py", sample.code + "\n", mode="block")
    assert analysis.skipped is None
    assert [(f.type, f.severity) for f in analysis.findings] == [("secret-keyword", "low")]
    assert analysis.snippets[0].text == 'password = "[REDACTED:secret-keyword]"'


# -- Files that are indexed ----------------------------------------------------------------


def test_a_python_file_gives_symbols_imports_and_redacted_snippets() -> None:
    token = samples.github_token(random.Random(3)).value
    source = f'"""Client."""\nimport os\n\n\ndef login(token="{token}"):\n    return os.getenv("HOME")\n'
    analysis = _analyse("pkg/client.py", source)
    assert (analysis.language, analysis.skipped, analysis.syntax_error, analysis.lines) == ("python", None, "", 6)
    assert [f.type for f in analysis.findings] == ["github-token"]
    assert [(s.kind, s.qualname, s.calls) for s in analysis.symbols] == [
        ("module", "pkg.client", ()),
        ("function", "login", ("os.getenv",)),
    ]
    assert analysis.symbols[1].signature == "def login(token='[REDACTED:github-token]')"
    assert [i.module for i in analysis.imports] == ["os"]
    assert [(s.kind, s.qualname, s.line_start, s.line_end) for s in analysis.snippets] == [
        ("symbol", "pkg.client", 1, 6),
        ("symbol", "login", 5, 6),
    ]
    assert analysis.snippets[1].text == ('def login(token="[REDACTED:github-token]"):\n    return os.getenv("HOME")')


def test_a_python_file_with_a_syntax_error_is_indexed_as_text() -> None:
    token = samples.github_token(random.Random(4)).value
    source = f'TOKEN = "{token}"\ndef broken(:\n    pass\n'
    analysis = _analyse("pkg/broken.py", source)
    assert analysis.language == "python"
    assert analysis.syntax_error == "line 2: invalid syntax; indexed as text"
    assert analysis.symbols == ()
    assert [(s.kind, s.line_start, s.line_end) for s in analysis.snippets] == [("text", 1, 3)]
    assert analysis.snippets[0].text.startswith('TOKEN = "[REDACTED:github-token]"\n')


def test_other_text_files_are_indexed_in_windows() -> None:
    url = "postgres://app:{}@db.internal/app".format("x7Gq" * 4)
    text = "# Setup\n\n" + "\n".join(f"step {n}" for n in range(70)) + f"\n\nDATABASE_URL={url}\n"
    analysis = _analyse("docs/SETUP.md", text)
    assert analysis.language == "text"
    assert [(s.line_start, s.line_end) for s in analysis.snippets] == [(1, 50), (51, 74)]
    assert analysis.snippets[-1].text.endswith("DATABASE_URL=postgres://app:[REDACTED:basic-auth-url]@db.internal/app")
    assert [(f.type, f.line) for f in analysis.findings] == [("basic-auth-url", 74)]


def test_caller_errors_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        analyse_file("a.py", b"", mode="strict", hash_key=KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hash key"):
        analyse_file("a.py", b"", mode="redact", hash_key=b"")


def test_a_value_that_survives_redaction_withholds_the_content(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = samples.stripe_key(random.Random(5))

    def leaky(text: str, **_: object) -> PythonSymbols:
        leak = SymbolRecord(kind="module", name="m", qualname="m", docstring=sample.value, line_start=1, line_end=1)
        return PythonSymbols((leak,), ())

    monkeypatch.setattr(analyse_module, "extract_symbols", leaky)
    analysis = _analyse("m.py", sample.code + "\n")
    assert analysis.skipped == "redaction-failed"
    assert analysis.reason == "content withheld: a secret value was still present after redaction"
    assert [f.type for f in analysis.findings] == ["stripe-key"]
    assert sample.value not in msgspec.json.encode(analysis).decode()


def test_the_result_travels_between_processes() -> None:
    source = samples.python_module(random.Random(6)) + samples.jwt(random.Random(6)).code + "\n"
    context = multiprocessing.get_context("spawn")  # a fresh worker, as in a real pool
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        remote = pool.submit(analyse_file, "svc/app.py", source.encode(), mode="redact", hash_key=KEY).result()
    local = _analyse("svc/app.py", source)
    assert remote == local
    assert pickle.loads(pickle.dumps(local)) == local
    assert msgspec.json.decode(msgspec.json.encode(local), type=FileAnalysis) == local


# -- No secret ever leaves -----------------------------------------------------------------


def _python_context(sample: Sample, self_evident: bool, rng: random.Random, n: int) -> str:
    """The sample placed somewhere a secret can stand in Python: its own code, or if it is
    recognisable anywhere, a docstring, a comment, a default value, a call, an f-string."""
    places = [sample.code]
    if self_evident:
        places.append(f'def doc_{n}():\n    """Uses {sample.value} for tests."""\n    return {n}')
    if self_evident and "\n" not in sample.value:
        places += [
            f"# the old one was {sample.value}",
            f'def default_{n}(secret="{sample.value}") -> None:\n    connect(secret)',
            f'class Holder{n}:\n    def call(self):\n        return self.client.auth("{sample.value}", retries=3)',
            f'MESSAGE_{n} = f"value={sample.value} for {{user}}"',
        ]
    return rng.choice(places)


def _text_context(sample: Sample, self_evident: bool, rng: random.Random) -> str:
    places = [sample.code]
    if self_evident and "\n" not in sample.value:
        places += [f"secret: {sample.value}", f"Use `{sample.value}` to log in."]
    return rng.choice(places)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, msgspec.Struct):
        return [s for name in value.__struct_fields__ for s in _strings(getattr(value, name))]
    if isinstance(value, tuple):
        return [s for item in value for s in _strings(item)]
    return []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    picks=st.lists(st.integers(0, len(SAMPLERS) - 1), min_size=1, max_size=5),
    python=st.booleans(),
    mode=st.sampled_from(["redact", "block"]),
)
def test_no_secret_value_appears_anywhere_in_the_result(
    seed: int, picks: list[int], python: bool, mode: analyse_module.Mode
) -> None:
    rng = random.Random(seed)
    samplers = [SAMPLERS[pick] for pick in picks]
    chosen = [sampler(rng) for sampler in samplers]
    parts = [samples.python_module(rng, classes=1, functions=2)]
    for n, (sampler, sample) in enumerate(zip(samplers, chosen, strict=True)):
        self_evident = sampler in samples.SELF_EVIDENT
        parts.append(
            _python_context(sample, self_evident, rng, n) if python else _text_context(sample, self_evident, rng)
        )
        parts.append(samples.python_module(rng, classes=1, functions=1) if python else "Some prose.\n")
    analysis = _analyse("svc/module.py" if python else "svc/notes.txt", "\n".join(parts), mode)

    encoded = msgspec.json.encode(analysis).decode()
    shown = "\0".join([encoded, repr(analysis), *_strings(analysis), pickle.dumps(analysis).decode("latin-1")])
    for sample in chosen:
        for piece in sample.pieces():
            assert piece not in shown
    assert analysis.skipped != "redaction-failed"
    assert {sample.type for sample in chosen} <= {finding.type for finding in analysis.findings}
    if mode == "block" and any(sample.type not in {"secret-keyword", "high-entropy-string"} for sample in chosen):
        assert analysis.skipped == "blocked-secret"
        assert analysis.snippets == ()
    else:
        assert analysis.skipped is None
        assert analysis.snippets
