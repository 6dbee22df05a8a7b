"""Secret scanning: detection, types and severities, redaction, keyed hashes, and speed."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable, Iterator

import pytest
from detect_secrets.core import scan as detect_secrets_scan
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.settings import default_settings, get_settings

from projections.codeindex import _detect_secrets
from projections.codeindex.secrets import (
    SEVERITY,
    TYPES,
    SecretSpan,
    find_secrets,
    keyed_hash,
    marker,
    redact,
    redact_range,
    scan_secrets,
    severity_of,
    slug_for,
)
from tests.projections.codeindex import samples
from tests.projections.codeindex.samples import SAMPLERS, Sample

KEY = b"index-hash-key"


def _module_with(sample: Sample, seed: int = 1) -> tuple[str, int]:
    """A realistic module with the sample's code after its imports; the value's line number."""
    lines = samples.python_module(random.Random(seed)).split("\n")
    at = 12
    text = "\n".join([*lines[:at], sample.code, *lines[at:]])
    return text, at + 1 + sample.code[: sample.code.index(sample.value)].count("\n")


def _reference(text: str, path: str) -> set[tuple[str, int]]:
    """What `detect-secrets scan` with its default plugins and filters reports, line by line."""
    with default_settings() as settings:
        # Our scan ignores allowlist pragmas on purpose; compare like with like.
        settings.disable_filters("detect_secrets.filters.allowlist.is_line_allowlisted")
        lines = list(enumerate(text.split("\n"), start=1))
        return {(s.type, s.line_number) for s in detect_secrets_scan._process_line_based_plugins(lines, filename=path)}


def _fast(text: str, path: str) -> set[tuple[str, int]]:
    return {(hit.secret_type, hit.line) for hit in _detect_secrets.scan(text, path=path)}


@pytest.fixture(params=SAMPLERS, ids=lambda sampler: sampler.__name__)
def sampler(request: pytest.FixtureRequest) -> Callable[[random.Random], Sample]:
    sampler: Callable[[random.Random], Sample] = request.param
    return sampler


# -- Detection ---------------------------------------------------------------------------


def test_each_kind_of_secret_is_found_typed_and_redacted(sampler: Callable[[random.Random], Sample]) -> None:
    for seed in range(3):
        sample = sampler(random.Random(seed))
        text, line = _module_with(sample, seed)
        scan = scan_secrets(text, path="app/settings.py", hash_key=KEY)
        assert [(f.type, f.line) for f in scan.findings] == [(sample.type, line)]
        finding = scan.findings[0]
        assert finding.severity == SEVERITY[sample.type]
        assert finding.value_hash == keyed_hash(sample.value, KEY)
        assert marker(sample.type) in scan.redacted
        for piece in sample.pieces():
            assert piece not in scan.redacted
        assert scan.redacted.count("\n") == text.count("\n")


def test_clean_code_gives_no_finding() -> None:
    for seed in range(5):
        text = samples.python_module(random.Random(seed), classes=5, functions=8)
        text += "\n" + "\n".join(f"def f{n}():\n    {line.strip()}" for n, line in enumerate(samples.CLEAN_LINES))
        scan = scan_secrets(text, path="pkg/clean.py", hash_key=KEY)
        assert scan.findings == ()
        assert scan.redacted == text


def test_the_fast_scan_reports_what_detect_secrets_reports() -> None:
    """What detect-secrets' own line-by-line scan reports, on realistic files, and only one
    thing more: provider keys on lines its indirect-reference filter drops."""
    for seed in range(3):
        rng = random.Random(seed)
        parts = [samples.python_module(rng)]
        for sampler in SAMPLERS:
            parts += [sampler(rng).code, samples.python_module(rng, classes=1, functions=1)]
        parts += samples.CLEAN_LINES
        text = "\n".join(parts)
        expected = _reference(text, "svc/app.py")
        assert len(expected) >= 15
        found = _fast(text, "svc/app.py")
        assert expected <= found
        lines = text.split("\n")
        for secret_type, line in found - expected:
            assert TYPES[secret_type] not in ("secret-keyword", "high-entropy-string", "public-ip")
            assert heuristic.is_indirect_reference(lines[line - 1])


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("deploy/app.ini", "[db]\npassword = {password}\nhost = db.internal\n"),
        ("deploy/values.yaml", 'db:\n  password: "{password}"\n  user: app\n'),
        ("deploy/app.properties", "db.password={password}\n"),
        ("web/config.js", 'const apiKey = "{password}";\n'),
        ("cmd/main.go", 'password := "{password}"\n'),
        ("README.md", "Set `password = {password}` and run.\n"),
        ("README.md", "Set `password = '{password}'` and run.\n"),
        ("app/unquoted.py", "password = {password}\n"),
        ("src/main.c", 'char *db_password = "{password}";\n'),
        ("src/main.cpp", 'auto api_key = std::string("{password}");\n'),
        ("src/Main.java", 'private static final String SECRET = "{password}";\n'),
        ("infra/main.tf", 'password = "{password}"\n'),
        ("cloudant.py", 'cloudant_password = "{cloudant}"\n'),
        ("ibm.py", 'ibm_cloud_iam_key = "{iam}"\n'),
    ],
)
def test_keyword_patterns_follow_the_file_type_as_in_detect_secrets(path: str, text: str) -> None:
    rng = random.Random(3)
    password = samples.password_assignment(rng).value
    cloudant = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(24))
    iam = "".join(rng.choice(samples.ALNUM + "_-") for _ in range(44))
    text = text.format(password=password, cloudant=cloudant, iam=iam)
    expected = _reference(text, path)
    assert _fast(text, path) == expected


def test_provider_keys_are_found_even_inside_calls() -> None:
    # detect-secrets drops every finding on a line like `x = f(...)` (its indirect-reference
    # filter, meant for `secret = get_secret()`); we keep that filter for heuristics only.
    sample = samples.github_token(random.Random(1))
    text = f'client = Github(auth=Token("{sample.value}"))\n'
    assert _reference(text, "a.py") == set()
    assert [f.type for f in scan_secrets(text, path="a.py", hash_key=KEY).findings] == ["github-token"]
    assert [f.type for f in scan_secrets('password = get("x")\n', path="a.py", hash_key=KEY).findings] == []


def test_allowlist_pragmas_do_not_turn_scanning_off() -> None:
    sample = samples.password_assignment(random.Random(2))
    text = f"{sample.code}  # pragma: allowlist secret\n"
    scan = scan_secrets(text, path="a.py", hash_key=KEY)
    assert [f.type for f in scan.findings] == ["secret-keyword"]
    assert sample.value not in scan.redacted


def test_lock_files_are_spared_the_heuristics_but_not_the_provider_keys() -> None:
    rng = random.Random(4)
    integrity = "sha512-" + "".join(rng.choice(samples.ALNUM + "+/") for _ in range(86)) + "=="
    token = samples.github_token(rng).value
    text = f'{{"integrity": "{integrity}", "resolved": "https://x:{token}@npm.example.com/a.tgz"}}\n'
    # The token is also the URL's password: one finding, of the more telling type.
    assert [f.type for f in scan_secrets(text, path="package-lock.json", hash_key=KEY).findings] == ["github-token"]
    assert "high-entropy-string" in {f.type for f in scan_secrets(text, path="data.json", hash_key=KEY).findings}


# -- Our own detectors ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(samples.private_keys()))
def test_a_private_key_block_is_redacted_whole(kind: str) -> None:
    key = samples.private_keys()[kind].strip()
    text = f"# deploy key\n{key}\nafter = 1\n"
    scan = scan_secrets(text, path="keys/id.pem", hash_key=KEY)
    assert [(f.type, f.line, f.severity) for f in scan.findings] == [("private-key", 2, "high")]
    assert scan.findings[0].value_hash == keyed_hash(key, KEY)
    redacted_lines = scan.redacted.split("\n")
    assert redacted_lines[0] == "# deploy key"
    assert redacted_lines[1] == "[REDACTED:private-key]"
    assert set(redacted_lines[2 : 1 + key.count("\n") + 1]) == {""}  # the key's other lines, kept empty
    assert redacted_lines[-2] == "after = 1"


def test_a_truncated_key_is_redacted_to_its_last_line_of_key_material() -> None:
    key_lines = samples.private_keys()["pkcs8"].strip().split("\n")
    text = "\n".join(key_lines[:6]) + "\n\nprint('done')\n"
    scan = scan_secrets(text, path="notes.txt", hash_key=KEY)
    assert [f.type for f in scan.findings] == ["private-key"]
    assert scan.redacted.endswith("[REDACTED:private-key]\n\n\n\n\n\n\nprint('done')\n")


def test_naming_the_armor_is_not_a_key_block() -> None:
    # detect-secrets reports the BEGIN line itself; our block detector needs key material,
    # so the code after it stays readable.
    code = (
        'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):\n'
        '    kind = "rsa"\n'
        'END = "-----END RSA PRIVATE KEY-----"\n'
    )
    scan = scan_secrets(code, path="keys.py", hash_key=KEY)
    assert [(f.type, f.line) for f in scan.findings] == [("private-key", 1)]
    assert scan.redacted.split("\n")[1:] == code.split("\n")[1:]


@pytest.mark.parametrize(
    ("url", "password"),
    [
        ("postgres://admin:{p}@db.internal:5432/app", "{p}"),
        ("https://deploy:{p}!x$y@example.com/repo.git", "{p}!x$y"),
        ("redis://:{p}@cache:6379/0", "{p}"),
        ("amqp://user:{p}@with@at@mq/vhost", "{p}@with@at"),  # an unencoded "@" in the password
    ],
)
def test_url_passwords_are_redacted_keeping_user_and_host(url: str, password: str) -> None:
    secret = "".join(random.Random(5).choice(samples.ALNUM) for _ in range(14))
    url, password = url.format(p=secret), password.format(p=secret)
    scan = scan_secrets(f'URL = "{url}"\n', path="a.py", hash_key=KEY)
    assert [(f.type, f.severity) for f in scan.findings] == [("basic-auth-url", "high")]
    assert scan.findings[0].value_hash == keyed_hash(password, KEY)
    assert scan.redacted == f'URL = "{url.replace(password, "[REDACTED:basic-auth-url]")}"\n'


@pytest.mark.parametrize(
    "url",
    [
        "postgres://{user}:{password}@{host}/db",
        "postgres://app:%(password)s@db/app",
        "postgres://app:$DB_PASSWORD@db/app",
        "postgres://app:${DB_PASSWORD}@db/app",
        "postgres://app:<password>@db/app",
        "postgres://app:****@db/app",
        "https://example.com/a:b@c",  # a path, not credentials
    ],
)
def test_url_placeholders_are_not_secrets(url: str) -> None:
    assert scan_secrets(f'url = "{url}"\n', path="a.py", hash_key=KEY).findings == ()


# -- Overlaps, repeats, redaction ----------------------------------------------------------


def test_one_value_found_by_several_detectors_is_one_finding_of_the_most_telling_type() -> None:
    sample = samples.aws_access_key(random.Random(8))
    text = f'aws_password = "{sample.value}"\n'  # keyword, and AWS key
    assert len(_fast(text, "a.py")) == 2
    scan = scan_secrets(text, path="a.py", hash_key=KEY)
    assert [(f.type, f.severity) for f in scan.findings] == [("aws-access-key", "high")]
    assert scan.redacted == 'aws_password = "[REDACTED:aws-access-key]"\n'


def test_a_long_value_is_redacted_everywhere_but_reported_where_found() -> None:
    sample = samples.high_entropy_string(random.Random(9))
    text = f'{sample.code}\n# rotated from {sample.value} on Monday\nprint("{sample.value[:8]}")\n'
    scan = scan_secrets(text, path="a.py", hash_key=KEY)
    assert [(f.type, f.line) for f in scan.findings] == [("high-entropy-string", 1)]
    assert scan.redacted.split("\n")[1] == "# rotated from [REDACTED:high-entropy-string] on Monday"
    assert sample.value[:8] in scan.redacted  # only whole values are secrets


def test_overlapping_spans_become_one_marker_of_the_best_type() -> None:
    text = "0123456789abcdef"
    spans = [SecretSpan("secret-keyword", "low", 1, 2, 8), SecretSpan("github-token", "high", 1, 5, 12)]
    assert redact(text, spans) == "01[REDACTED:github-token]cdef"
    assert redact_range(text, spans, 6, 14) == "[REDACTED:github-token]cd"
    assert redact_range(text, spans, 12, 16) == "cdef"


def test_a_reported_secret_inside_a_larger_low_one_is_kept() -> None:
    spans = (
        SecretSpan("high-entropy-string", "low", 1, 0, 40),
        SecretSpan("github-token", "high", 1, 4, 44),
    )
    assert redact("x" * 50, spans) == "[REDACTED:github-token]xxxxxx"


def test_redaction_keeps_line_numbers() -> None:
    text = "a\nb = '''\nline1\nline2\n'''\nc\n"
    spans = [SecretSpan("private-key", "high", 3, text.index("line1"), text.index("line2") + 5)]
    assert redact(text, spans) == "a\nb = '''\n[REDACTED:private-key]\n\n'''\nc\n"


# -- Hashes, types, reprs -------------------------------------------------------------------


def test_keyed_hash_is_hmac_sha256_under_the_given_key() -> None:
    assert keyed_hash("value", b"k1") == hmac.new(b"k1", b"value", hashlib.sha256).hexdigest()
    assert keyed_hash("value", b"k1") != keyed_hash("value", b"k2")
    with pytest.raises(ValueError, match="hash key"):
        keyed_hash("value", b"")
    with pytest.raises(ValueError, match="hash key"):
        scan_secrets("x = 1\n", path="a.py", hash_key=b"")


def test_every_detect_secrets_plugin_has_a_slug_and_every_slug_a_severity() -> None:
    assert set(TYPES) == set(get_mapping_from_secret_type_to_class())
    assert set(TYPES.values()) | {"nkey-seed"} == set(SEVERITY)
    assert {slug for slug, severity in SEVERITY.items() if severity == "low"} == {
        "high-entropy-string",
        "public-ip",
        "secret-keyword",
    }
    assert slug_for("Shiny New Cloud Key") == "shiny-new-cloud-key"
    assert severity_of("shiny-new-cloud-key") == "high"  # unknown types fail closed


def test_no_repr_shows_a_value(sampler: Callable[[random.Random], Sample]) -> None:
    sample = sampler(random.Random(11))
    text, _ = _module_with(sample)
    scan = scan_secrets(text, path="a.py", hash_key=KEY)
    shown = repr(scan) + repr(scan.spans) + repr(scan.findings) + str(scan.findings)
    shown += repr(find_secrets(text, path="a.py")) + repr(_detect_secrets.scan(text, path="a.py"))
    for piece in sample.pieces():
        assert piece not in shown


# -- Process hygiene and speed -----------------------------------------------------------


def test_scanning_refuses_to_run_with_network_verification_enabled() -> None:
    filters = get_settings().filters
    filters[_detect_secrets._VERIFY_FILTER] = {"min_level": 2}
    try:
        with pytest.raises(RuntimeError, match="verify secrets over the network"):
            find_secrets("x = 1\n", path="a.py")
    finally:
        del filters[_detect_secrets._VERIFY_FILTER]


def _realistic_lines(count: int) -> Iterator[str]:
    rng = random.Random(12)
    produced = 0
    while produced < count:
        module = samples.python_module(rng, classes=4, functions=6)
        produced += module.count("\n")
        yield module


def test_scanning_is_much_faster_than_line_by_line() -> None:
    # detect-secrets' own scan does ~4,000-6,500 lines/s; ours ~150,000 on this generated
    # code and on the standard library. CPU time, with a wide margin, so that a busy machine
    # does not fail it.
    modules = list(_realistic_lines(20_000))
    lines = sum(module.count("\n") for module in modules)
    find_secrets("warm = 'up'\n", path="a.py")
    started = time.process_time()
    for module in modules:
        find_secrets(module, path="pkg/module.py")
    assert lines / (time.process_time() - started) > 25_000
