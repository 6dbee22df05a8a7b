"""core.logs: the line format, idempotent setup, and no secret in any output line.

The property tests plant a generated secret of each kind in random text and log it
through every channel a record has: the message, its args, extra fields (plain and
nested), an exception (and its cause). The surrounding text is drawn from an alphabet
disjoint from the secrets' (Greek letters, whitespace, a few symbols), and free-form
secrets hold an upper-case letter, a lower-case letter and a digit, so a secret can
only be in the output if it leaked: no timestamp, key name or marker contains one.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import string
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from core.logs import JsonFormatter, RedactionFilter, configure_logging, get_logger

Format = Literal["json", "text"]
LOGGER = "mahavishnu.test"

# -- Setup and restore -------------------------------------------------------------------


@contextmanager
def captured(fmt: Format = "json") -> Iterator[io.StringIO]:
    """Configure logging into a buffer; put the root logger back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buffer = io.StringIO()
    configure_logging(level="debug", fmt=fmt, stream=buffer)
    try:
        yield buffer
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


# -- The format ---------------------------------------------------------------------------


def test_json_line_has_the_fields_and_extras() -> None:
    with captured() as buffer:
        get_logger(LOGGER).warning("stream %s ready", "EVENTS", extra={"device_id": "d-1", "count": 3})

    (line,) = lines(buffer)
    assert line == {
        "ts": line["ts"],
        "level": "warning",
        "logger": LOGGER,
        "msg": "stream EVENTS ready",
        "device_id": "d-1",
        "count": 3,
    }
    assert isinstance(line["ts"], str)
    assert line["ts"].endswith("Z")
    assert len(line["ts"]) == len("2025-01-01T00:00:00.000Z")


def test_json_line_carries_the_traceback() -> None:
    with captured() as buffer:
        try:
            raise KeyError("missing")
        except KeyError:
            get_logger(LOGGER).exception("lookup failed")

    (line,) = lines(buffer)
    assert line["msg"] == "lookup failed"
    assert isinstance(line["exc"], str)
    assert line["exc"].startswith("Traceback")
    assert "KeyError: 'missing'" in line["exc"]


def test_extra_named_like_a_field_and_odd_values() -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing"

    with captured() as buffer:
        get_logger(LOGGER).info("x", extra={"ts": "mine", "obj": Thing(), "nan": float("nan"), "t": (1, 2)})

    (line,) = lines(buffer)
    assert line["extra_ts"] == "mine"
    assert line["obj"] == "thing"
    assert line["t"] == "(1, 2)" or line["t"] == [1, 2]


def test_text_format() -> None:
    with captured("text") as buffer:
        get_logger(LOGGER).info("hello %s", "world", extra={"stream": "EVENTS"})

    text = buffer.getvalue()
    assert text.endswith(f"INFO    {LOGGER}: hello world stream='EVENTS'\n")


def test_configure_twice_installs_one_handler() -> None:
    with captured() as first:
        second = io.StringIO()
        configure_logging(stream=second)
        get_logger(LOGGER).info("once")

        ours = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactionFilter) for f in h.filters)]
    assert len(ours) == 1
    assert first.getvalue() == ""
    assert [line["msg"] for line in lines(second)] == ["once"]


def test_level_is_applied() -> None:
    with captured() as buffer:
        configure_logging(level="warning", stream=buffer)
        get_logger(LOGGER).info("hidden")
        get_logger(LOGGER).error("shown")

    assert [line["msg"] for line in lines(buffer)] == ["shown"]


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "json"), ("info", "xml")])
def test_rejects_unknown_level_or_format(level: str, fmt: Format) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level=level, fmt=fmt)


def test_bad_format_args_do_not_raise() -> None:
    with captured() as buffer:
        get_logger(LOGGER).info("%d items, password=%s", "many")

    (line,) = lines(buffer)
    assert "%d items" in str(line["msg"])


def test_records_of_other_libraries_are_redacted() -> None:
    with captured() as buffer:
        logging.getLogger("nats.aio.client").error("connect nats://svc:Sup3rSecret@hub:4222 failed")

    (line,) = lines(buffer)
    assert line["msg"] == "connect nats://svc:[REDACTED:password]@hub:4222 failed"


def test_secret_named_extra_and_stack_info() -> None:
    with captured() as buffer:
        get_logger(LOGGER).info("x", extra={"password": "Hunter2Hunter2", "auth": {"user": "u"}}, stack_info=True)

    (line,) = lines(buffer)
    assert line["password"] == "[REDACTED:password]"
    assert line["auth"] == "[REDACTED:authorization]"
    assert "Stack (most recent call last)" in str(line["stack"])


def test_other_root_handlers_see_the_redacted_record() -> None:
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    collector = Collect()
    logging.getLogger().addHandler(collector)
    try:
        with captured():
            get_logger(LOGGER).error("token=%s", "Abc123Xyz789")
    finally:
        logging.getLogger().removeHandler(collector)

    assert seen == ["token=[REDACTED:token]"]


def test_formatter_alone_still_redacts() -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"{LOGGER}.bare")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("password=%s", "Hunter2Hunter2", extra={"apiKey": "Key123Key123"})
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    (line,) = lines(buffer)
    assert line["msg"] == "password=[REDACTED:password]"
    assert line["apiKey"] == "[REDACTED:api_key]"


def test_exception_whose_str_fails() -> None:
    class Opaque(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    with captured() as buffer:
        try:
            raise Opaque
        except Opaque:
            get_logger(LOGGER).exception("odd")

    (line,) = lines(buffer)
    assert "Opaque" in str(line["exc"])


# -- Secrets ---------------------------------------------------------------------------

UPPER, LOWER, DIGITS = string.ascii_uppercase, string.ascii_lowercase, string.digits
ALNUM = UPPER + LOWER + DIGITS
NOISE = "αβγδεζηθικλμνξοπρστυφχψω ΔΣΩ \t\n§¶«»·"
# Characters that end an unquoted value (whitespace , ; & " ' < > ) ] } \) are left out.
BARE_VALUE = ALNUM + "!#$%*+-./:=?@^_~|("
QUOTED_VALUE = BARE_VALUE + " ,;&<>)]}"
URL_PASSWORD = ALNUM + "!$%*+-._~=&,;:()"
TOKEN = ALNUM + "._~+/-"
BASE32 = UPPER + "234567"
SECRET_KEYS = ["password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "x-api-key", "access_key"]
SECRET_KEYS += ["private_key", "DB_PASSWORD", "client_secret", "NATS_TOKEN", "Secret", "aws_secret_access_key"]

Planted = tuple[str, list[str]]  # the text holding the secret, the parts that must never be seen


@st.composite
def strong(draw: st.DrawFn, alphabet: str, min_size: int = 8, max_size: int = 40) -> str:
    """A string from `alphabet` holding at least one upper-case letter, lower-case letter and digit."""
    body = draw(st.text(alphabet, min_size=min_size - 3, max_size=max_size - 3))
    must = [draw(st.sampled_from(UPPER)), draw(st.sampled_from(LOWER)), draw(st.sampled_from(DIGITS))]
    return "".join(draw(st.permutations([*body, *must])))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def key_value(draw: st.DrawFn) -> Planted:
    key = draw(st.sampled_from(SECRET_KEYS))
    form = draw(st.sampled_from(["bare", "json", "repr"]))
    if form == "bare":
        value = draw(strong(BARE_VALUE))
        sep = draw(st.sampled_from(["=", ": ", " = ", ":", "=>"]))
        end = draw(st.sampled_from([" ", ",", ";", "\n", "&", ""]))
        return f"{key}{sep}{value}{end}", [value]
    value = draw(strong(QUOTED_VALUE))
    if form == "json":
        return json.dumps({key: value, "user": "n"}), [value]
    return repr({key: value}), [value]


@st.composite
def url_password(draw: st.DrawFn) -> Planted:
    scheme = draw(st.sampled_from(["nats", "tls", "https", "postgres", "redis", "amqp"]))
    user = draw(st.text(LOWER + DIGITS, max_size=10))
    password = draw(strong(URL_PASSWORD))
    host = draw(st.text(LOWER, min_size=1, max_size=10))
    return f"{scheme}://{user}:{password}@{host}.example:4222/path", [password]


@st.composite
def authorization(draw: st.DrawFn) -> Planted:
    token = draw(strong(TOKEN)) + draw(st.sampled_from(["", "=", "=="]))
    scheme = draw(st.sampled_from(["Bearer", "Basic", "bearer", "Token"]))
    form = draw(st.sampled_from(["header", "dict", "bare"]))
    if form == "header":
        return f"Authorization: {scheme} {token}", [token]
    if form == "dict":
        return repr({"Authorization": f"{scheme} {token}"}), [token]
    return f"{draw(st.sampled_from(['Bearer', 'Basic']))} {token}", [token]


@st.composite
def known_shape(draw: st.DrawFn) -> Planted:
    kind = draw(st.sampled_from(["aws", "github", "slack", "stripe", "openai", "google", "nkey"]))
    if kind == "aws":
        body = draw(st.text(UPPER + DIGITS, min_size=16, max_size=16))
        return draw(st.sampled_from(["AKIA", "ASIA"])) + body, [body]
    if kind == "nkey":
        body = draw(st.text(BASE32, min_size=55, max_size=55))
        return "S" + draw(st.sampled_from("UOACN")) + "A" + body, [body]
    prefix, alphabet, size = {
        "github": (draw(st.sampled_from(["ghp_", "gho_", "ghs_", "github_pat_"])), ALNUM, 36),
        "slack": (draw(st.sampled_from(["xoxb-", "xoxp-", "xoxa-"])), ALNUM + "-", 24),
        "stripe": (draw(st.sampled_from(["sk_live_", "rk_live_"])), ALNUM, 24),
        "openai": (draw(st.sampled_from(["sk-", "sk-proj-"])), ALNUM, 40),
        "google": ("AIza", ALNUM + "_-", 35),
    }[kind]
    body = draw(strong(alphabet, min_size=size, max_size=size))
    return prefix + body, [body]


@st.composite
def jwt(draw: st.DrawFn) -> Planted:
    header = b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    payload = b64url(json.dumps({"sub": draw(strong(ALNUM)), "nats": {"pub": {}}}).encode())
    signature = b64url(draw(st.binary(min_size=16, max_size=64)))
    return f"{header}.{payload}.{signature}", [payload, signature]


@st.composite
def private_key(draw: st.DrawFn) -> Planted:
    if draw(st.booleans()):
        key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey = ed25519.Ed25519PrivateKey.from_private_bytes(
            draw(st.binary(min_size=32, max_size=32))
        )
        formats = [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.OpenSSH]
    else:
        secret = draw(st.integers(min_value=1, max_value=2**255))
        key = ec.derive_private_key(secret, ec.SECP256R1())
        formats = [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
    pem = key.private_bytes(
        serialization.Encoding.PEM, draw(st.sampled_from(formats)), serialization.NoEncryption()
    ).decode()
    body = [line for line in pem.splitlines() if line and not line.startswith("-----") and len(line) >= 8]
    if draw(st.booleans()):  # truncated: the END line never made it into the log
        pem = pem[: pem.rindex("-----END")]
    return pem, body


SECRETS = st.one_of(key_value(), url_password(), authorization(), known_shape(), jwt(), private_key())
PROPERTY = settings(max_examples=200, deadline=None, database=None)


@st.composite
def planted(draw: st.DrawFn) -> Planted:
    text, fragments = draw(SECRETS)
    before = draw(st.text(NOISE, max_size=30))
    after = draw(st.text(NOISE, max_size=30))
    return f"{before}{text}{after}", fragments


def assert_hidden(fmt: Format, output: str, fragments: list[str]) -> None:
    assert output, "nothing was logged"
    for fragment in fragments:
        assert fragment not in output
    if fmt == "json":
        for line in output.splitlines():
            json.loads(line)


FORMATS: list[Format] = ["json", "text"]


@PROPERTY
@given(planted())
def test_secret_in_message_is_hidden(secret: Planted) -> None:
    text, fragments = secret
    for fmt in FORMATS:
        with captured(fmt) as buffer:
            get_logger(LOGGER).info(text)
        assert_hidden(fmt, buffer.getvalue(), fragments)


@PROPERTY
@given(planted())
def test_secret_in_args_is_hidden(secret: Planted) -> None:
    text, fragments = secret
    for fmt in FORMATS:
        with captured(fmt) as buffer:
            get_logger(LOGGER).warning("got %s and %r", text, text)
            get_logger(LOGGER).warning("mapping %(value)s", {"value": text})
        assert_hidden(fmt, buffer.getvalue(), fragments)


@PROPERTY
@given(planted())
def test_secret_in_extra_is_hidden(secret: Planted) -> None:
    text, fragments = secret
    for fmt in FORMATS:
        with captured(fmt) as buffer:
            get_logger(LOGGER).info(
                "event",
                extra={"detail": text, "nested": {"items": [text, (1, text.encode())]}, "password": fragments[0]},
            )
        assert_hidden(fmt, buffer.getvalue(), fragments)


@PROPERTY
@given(planted())
def test_secret_in_exception_is_hidden(secret: Planted) -> None:
    text, fragments = secret
    for fmt in FORMATS:
        with captured(fmt) as buffer:
            try:
                try:
                    raise KeyError(text)
                except KeyError as cause:
                    raise ValueError(text) from cause
            except ValueError as exc:
                get_logger(LOGGER).exception("failed: %s", exc)
                get_logger(LOGGER).error("failed again", exc_info=exc, extra={"error": exc})
        assert_hidden(fmt, buffer.getvalue(), fragments)
