"""core.redaction: each kind of credential, the keys that are and are not secret, speed."""

from __future__ import annotations

import time

import pytest

from core.redaction import is_secret_key, redact, redact_value

SEED = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU"
JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJBQkNERUYifQ.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("login password=hunter2 ok", "login password=[REDACTED:password] ok"),
        ("passwd: hunter2", "passwd: [REDACTED:password]"),
        ("PWD=hunter2", "PWD=[REDACTED:password]"),
        ("db_password = 'two words'", "db_password = '[REDACTED:password]'"),
        ('{"client_secret": "a b c", "user": "bob"}', '{"client_secret": "[REDACTED:secret]", "user": "bob"}'),
        ("{'token': 'abc'}", "{'token': '[REDACTED:token]'}"),
        ('"{\\"token\\": \\"abc def\\"}"', '"{\\"token\\": \\"[REDACTED:token]\\"}"'),
        (
            "api_key=k1 apikey=k2 x-api-key: k3",
            "api_key=[REDACTED:api_key] apikey=[REDACTED:api_key] x-api-key: [REDACTED:api_key]",
        ),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key=[REDACTED:access_key]"),
        ("private_key: abc", "private_key: [REDACTED:private_key]"),
        ('password="never closed', 'password="[REDACTED:password]"'),
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [REDACTED:authorization]"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic [REDACTED:authorization]"),
        ("{'Authorization': 'Token abc'}", "{'Authorization': 'Token [REDACTED:authorization]'}"),
        ("sent Bearer Zm9vYmFyYmF6 upstream", "sent Bearer [REDACTED:token] upstream"),
        ("nats://alice:s3cr@t@host:4222/x", "nats://alice:[REDACTED:password]@host:4222/x"),
        ("redis://:pw@localhost", "redis://:[REDACTED:password]@localhost"),
        ("key AKIAIOSFODNN7EXAMPLE", "key [REDACTED:aws_access_key]"),
        ("ghp_" + "a1" * 18, "[REDACTED:github_token]"),
        ("github_pat_" + "A" * 30, "[REDACTED:github_token]"),
        ("xoxb-1234567890-abcdef", "[REDACTED:slack_token]"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[REDACTED:stripe_key]"),
        ("use sk-proj-abcdefghijklmnopqrstuvwxyz0123", "use [REDACTED:api_key]"),
        ("AIza" + "Sy" * 17 + "x", "[REDACTED:google_api_key]"),
        (f"seed={SEED}", "seed=[REDACTED:nkey_seed]"),
        (f"jwt {JWT} end", "jwt [REDACTED:jwt] end"),
        ("-----BEGIN PRIVATE KEY-----\nMIIabc\n-----END PRIVATE KEY-----\nafter", "[REDACTED:private_key]\nafter"),
        ("-----BEGIN CERTIFICATE-----\\nMIIabc\\n-----END CERTIFICATE----- x", "[REDACTED:pem] x"),
        ("key: -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\nand the rest", "key: [REDACTED:private_key]"),
    ],
)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_nats_creds_file() -> None:
    creds = (
        f"-----BEGIN NATS USER JWT-----\n{JWT}\n------END NATS USER JWT------\n\n"
        f"************************* IMPORTANT *************************\n"
        f"-----BEGIN USER NKEY SEED-----\n{SEED}\n------END USER NKEY SEED------\n"
    )

    redacted = redact(creds)

    assert SEED not in redacted
    assert JWT not in redacted
    assert "IMPORTANT" in redacted


@pytest.mark.parametrize(
    "text",
    [
        "token_count=5 max_tokens=3 secret_name=db private_key_path=/etc/k.pem",
        "key=devices.42 public_key: MCowBQYDK2VwAyEA monkey=1",
        "https://example.com:8443/path?q=1 and mailto:ops@example.com",
        "Basic authentication failed; Bearer token missing",
        "task-abcdefghijklmnopqrstuvwxyz0123 disk-usage",
        "plain text with numbers 1234567890 and AKIA but short",
    ],
)
def test_leaves_harmless_text(text: str) -> None:
    assert redact(text) == text


def test_is_idempotent() -> None:
    text = f"Authorization: Bearer abc password='x' nats://u:p@h {JWT} {SEED} -----BEGIN PRIVATE KEY-----\nA"
    once = redact(text)

    assert redact(once) == once


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("password", "password"),
        ("db_password", "password"),
        ("passwordHash", "password"),
        ("client_secret", "secret"),
        ("AUTH_TOKEN", "token"),
        ("refreshToken", "token"),
        ("credentials", "credential"),
        ("Authorization", "authorization"),
        ("apiKey", "api_key"),
        ("x-api-key", "api_key"),
        ("apikey", "api_key"),
        ("aws_secret_access_key", "access_key"),
        ("private_key", "private_key"),
        ("signing_key", "key"),
        ("nkey_seed", "nkey_seed"),
        ("key", None),
        ("key_id", None),
        ("public_key", None),
        ("monkey", None),
        ("token_count", None),
        ("secret_name", None),
        ("bypass", None),
        ("", None),
    ],
)
def test_is_secret_key(name: str, kind: str | None) -> None:
    assert is_secret_key(name) == kind


def test_redact_value_walks_structures() -> None:
    value = {
        "password": "hunter2",
        "password_hint": None,
        "key_id": "k-1",
        "count": 3,
        "nested": [b"token=abc", ("Bearer Zm9vYmFyYmF6", 1.5), {"apiKey": {"deep": "x"}}],
        "tags": {"a"},
        7: True,
    }

    assert redact_value(value) == {
        "password": "[REDACTED:password]",
        "password_hint": None,
        "key_id": "k-1",
        "count": 3,
        "nested": ["token=[REDACTED:token]", ("Bearer [REDACTED:token]", 1.5), {"apiKey": "[REDACTED:api_key]"}],
        "tags": ["a"],
        7: True,
    }


def test_redact_value_never_raises() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    class Talkative:
        def __str__(self) -> str:
            return "Settings(password='hunter2')"

    loop: list[object] = []
    loop.append(loop)

    assert redact_value(Unprintable()) == "[REDACTED:unprintable]"
    assert redact_value(Talkative()) == "Settings(password='[REDACTED:password]')"
    assert "[REDACTED:too_deep]" in repr(redact_value(loop))


@pytest.mark.parametrize(
    "text",
    [
        "eyJ" * 70_000,
        "-" * 200_000,
        "password" + " " * 200_000,
        'password=\\"' * 20_000,
        "a://" + "b" * 200_000,
        "Bearer " * 30_000,
        "S" + "A" * 200_000,
    ],
)
def test_is_linear_on_hostile_input(text: str) -> None:
    start = time.perf_counter()
    redact(text)
    assert time.perf_counter() - start < 1.0
