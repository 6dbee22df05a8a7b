"""Remove credentials from text and values before they reach a log line.

`redact(text)` replaces every credential it recognises with `[REDACTED:<kind>]`;
`redact_value(obj)` does the same through dicts, lists and tuples and also blanks the
whole value of a dict key whose name says it holds a secret (`is_secret_key`).

What is recognised, in this order (earlier rules win, so a JWT inside `token=` is one
`[REDACTED:jwt]`):

- PEM blocks (`-----BEGIN ...-----` to `-----END ...-----`, including NATS creds-file
  blocks); a BEGIN line whose END is missing is redacted to the end of the text.
- JWTs (`eyJ...\\.eyJ...\\....`), which covers NATS user and account JWTs.
- Well-known key shapes: AWS access key ids, GitHub, Slack, Stripe, OpenAI-style and
  Google API keys, NATS nkey seeds (`SU...`, `SA...`, 58 base32 characters).
- Passwords in URLs: `scheme://user:secret@host` keeps the user and host.
- `Authorization: Bearer|Basic|... <value>` and a bare `Bearer <token>`.
- `key=value`, `key: value`, `"key": "value"` (JSON and Python reprs) for keys ending in
  password, passwd, passphrase, pwd, secret, token, api_key/apikey/x-api-key,
  access_key, secret_key, private_key, credential(s): the key stays, the value goes.
  An unquoted value ends at whitespace or one of `,;&"'<>)]}\\`; quote values that
  contain those.

This is a last line of defence, not a licence to log secrets: it cannot know that an
arbitrary word is a password. Everything is precompiled, linear in the input length,
and never raises (if a pattern ever failed the whole text is replaced).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

__all__ = ["is_secret_key", "redact", "redact_value"]


def _mark(kind: str) -> str:
    return f"[REDACTED:{kind}]"


# A value that already is one marker is kept as it is, so redacting twice changes nothing;
# a value that merely starts with one ("[REDACTED:aws_access_key]rest") is still replaced.
_MARKER: Final = r"\[REDACTED:[a-z_]{1,40}\]"
_ONE_MARKER: Final = re.compile(_MARKER)


def _keep_marker(head: str, value: str, kind: str, tail: str = "") -> str:
    return f"{head}{value if _ONE_MARKER.fullmatch(value) else _mark(kind)}{tail}"


# -- PEM -------------------------------------------------------------------------------
# Exactly five dashes before BEGIN/END (a sixth, as in NATS creds files, is simply left
# outside the match); a variable-length dash prefix would backtrack quadratically on
# long runs of dashes.
_PEM: Final = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]{1,64})-----.*?(?:-----END [A-Z0-9 ]{0,64}-----|\Z)",
    re.DOTALL,
)


def _pem_kind(match: re.Match[str]) -> str:
    label = match.group("label")
    if "PRIVATE KEY" in label:
        return _mark("private_key")
    if "SEED" in label:
        return _mark("nkey_seed")
    if "JWT" in label:
        return _mark("jwt")
    return _mark("pem")


# -- Token shapes ------------------------------------------------------------------------
_B64URL: Final = r"[A-Za-z0-9_\-]"
# "Not inside a longer word", where a repr()'d "\n", "\r" or "\t" just before counts as a gap.
_WORD_START: Final = r"(?:(?<![A-Za-z0-9])|(?<=\\[nrt]))"
_JWT: Final = re.compile(rf"(?:(?<![A-Za-z0-9_\-])|(?<=\\[nrt]))eyJ{_B64URL}{{4,}}\.eyJ{_B64URL}{{4,}}\.{_B64URL}*")

_AWS_PREFIXES: Final = ("AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA")
# (pattern, kind, needles): the pattern runs only when one of the lowercase needles is in
# the lowercased text, which spares most log lines most of the scans.
_SHAPES: Final[tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...]] = (
    (
        re.compile(r"(?<![A-Z0-9])(?:" + "|".join(_AWS_PREFIXES) + r")[A-Z0-9]{16}(?![A-Z0-9])"),
        "aws_access_key",
        tuple(prefix.lower() for prefix in _AWS_PREFIXES),
    ),
    (re.compile(r"gh[pousr]_[A-Za-z0-9]{30,255}"), "github_token", ("gh",)),
    (re.compile(r"github_pat_[A-Za-z0-9_]{22,255}"), "github_token", ("github_pat_",)),
    (re.compile(r"xox[abprs]-[A-Za-z0-9\-]{10,}"), "slack_token", ("xox",)),
    (re.compile(r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"), "stripe_key", ("_live_", "_test_")),
    (re.compile(_WORD_START + r"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_\-]{20,}"), "api_key", ("sk-",)),
    (re.compile(r"AIza[0-9A-Za-z_\-]{35}"), "google_api_key", ("aiza",)),
    (
        re.compile(r"(?<![A-Z2-7])S[UOACNPX]A[A-Z2-7]{55}(?![A-Z2-7])"),
        "nkey_seed",
        ("sua", "soa", "saa", "sca", "sna", "spa", "sxa"),
    ),
)

# -- URL passwords -----------------------------------------------------------------------
# The password runs to the last "@" of the authority, so an unencoded "@" in it is covered.
_URL_PASSWORD: Final = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s:/?#@\"'<>]*:)(?P<value>[^\s/?#\"'<>]+)@"
)

# -- Authorization headers ---------------------------------------------------------------
_AUTH_HEADER: Final = re.compile(
    r"(?P<head>(?:proxy-)?authorization\\*[\"']?\s*[:=]\s*\\*[\"']?"
    r"(?:(?:bearer|basic|digest|token|negotiate|ntlm|jwt|nkey)\s+)?+)(?P<value>[^\s\"',;\\]+)",
    re.IGNORECASE | re.ASCII,
)
# A bare scheme: the token must not be a plain lowercase word ("basic authentication").
_BEARER: Final = re.compile(
    r"(?P<head>" + _WORD_START + r"(?:bearer|basic)\s+)(?-i:(?![a-z]+(?![A-Za-z0-9._~+/=\-])))"
    r"(?=[A-Za-z0-9._~+/\-\[]{8})(?P<value>(?:" + _MARKER + r"|[A-Za-z0-9._~+/\-])+=*)",
    re.IGNORECASE | re.ASCII,
)

# -- key=value ---------------------------------------------------------------------------
# Matching starts at the secret word itself (no variable-length key prefix to backtrack
# over), so "db_password" and "x-api-key" are found through their last word.
_KEY_WORDS: Final = (
    r"password|passwd|passphrase|pwd|secret|token|api[_\-]?key|access[_\-]?key"
    r"|secret[_\-]?key|private[_\-]?key|credentials?"
)
_KEY_VALUE: Final = re.compile(
    r"(?P<key>" + _KEY_WORDS + r")(?![A-Za-z0-9_\-])"
    r"(?P<sep>\\*[\"']?\s*(?::|=>?)\s*)(?:"
    r"(?P<esc>\\+[\"'])(?P<ev>(?:(?!(?P=esc))[\s\S])*?)(?:(?P=esc)|\Z)"  # \"value\" in an escaped string
    r"|(?P<q>[\"'])(?P<qv>(?:[^\\\"']|\\[\s\S]|(?!(?P=q))[\"'])*)(?P=q)?"  # "value", 'value', unterminated
    r"|(?P<bare>(?:" + _MARKER + r"|[^\s,;&\"'<>)\]}\\])+)"  # bare value
    r")",
    re.IGNORECASE | re.ASCII,
)

_KIND_OF_WORD: Final = {
    "password": "password",
    "passwd": "password",
    "passphrase": "password",
    "pwd": "password",
    "pass": "password",
    "secret": "secret",
    "secrets": "secret",
    "token": "token",
    "tokens": "token",
    "credential": "credential",
    "credentials": "credential",
    "creds": "credential",
    "authorization": "authorization",
    "auth": "authorization",
    "cookie": "cookie",
    "seed": "nkey_seed",
    "apikey": "api_key",
    "accesskey": "access_key",
    "secretkey": "secret_key",
    "privatekey": "private_key",
}


def _key_kind(key: str) -> str:
    compact = re.sub(r"[_\-]", "", key.lower())
    return _KIND_OF_WORD.get(compact, compact)


def _replace_key_value(match: re.Match[str]) -> str:
    head = match.group("key") + match.group("sep")
    kind = _key_kind(match.group("key"))
    if match.group("esc") is not None:
        return _keep_marker(head + match.group("esc"), match.group("ev"), kind, match.group("esc"))
    if match.group("q") is not None:
        return _keep_marker(head + match.group("q"), match.group("qv"), kind, match.group("q"))
    return _keep_marker(head, match.group("bare"), kind)


_Replacement = str | Callable[[re.Match[str]], str]
_RULES: Final[tuple[tuple[re.Pattern[str], _Replacement, tuple[str, ...]], ...]] = (
    (_PEM, _pem_kind, ("-----begin ",)),
    (_JWT, _mark("jwt"), ("eyj",)),
    *((pattern, _mark(kind), needles) for pattern, kind, needles in _SHAPES),
    (_URL_PASSWORD, lambda m: _keep_marker(m.group("head"), m.group("value"), "password", "@"), ("://",)),
    (_AUTH_HEADER, lambda m: _keep_marker(m.group("head"), m.group("value"), "authorization"), ("authorization",)),
    (_BEARER, lambda m: _keep_marker(m.group("head"), m.group("value"), "token"), ("bearer", "basic")),
    (_KEY_VALUE, _replace_key_value, ("pass", "pwd", "secret", "token", "key", "credential")),
)


def redact(text: str) -> str:
    """Return `text` with every recognised credential replaced by `[REDACTED:<kind>]`.

    Never raises: should a rule ever fail, the whole text is replaced, because leaking
    is worse than losing a log message.
    """
    try:
        lowered = text.lower()
        for pattern, replacement, needles in _RULES:
            if not any(needle in lowered for needle in needles):
                continue
            text, count = pattern.subn(replacement, text)
            if count:
                lowered = text.lower()
        return text
    except Exception:
        return _mark("unredactable")


# -- Structured values -------------------------------------------------------------------
_SECRET_LAST_WORDS: Final = frozenset(_KIND_OF_WORD) - {"apikey", "accesskey", "secretkey", "privatekey"}
_SECRET_KEY_QUALIFIERS: Final = frozenset(
    {"api", "access", "secret", "private", "signing", "encryption", "master", "session", "client", "seed"}
)
_SECRET_ANY_WORD: Final = frozenset({"password", "passwd", "passphrase"})
_COMPACT_SECRET_NAMES: Final = frozenset({"apikey", "accesskey", "secretkey", "privatekey", "xapikey", "nkeyseed"})
_WORD: Final = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_MAX_DEPTH: Final = 32


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)]


def is_secret_key(name: str) -> str | None:
    """Return the kind of secret a field called `name` holds, or None if it looks harmless.

    A name is secret when its last word is one of password, passwd, passphrase, pwd,
    pass, secret(s), token(s), credential(s), creds, authorization, auth, cookie, seed;
    when it ends in `<qualifier>_key` with qualifier api, access, secret, private,
    signing, encryption, master, session, client or seed (`apiKey`, `x-api-key`,
    `aws_secret_access_key`); or when any word is password/passwd/passphrase
    (`password_hash`). Words split on `_ - .`, spaces and camelCase.

    Deliberately not secret: a bare `key` (NATS KV keys are logged all the time),
    `key_id`, `public_key`, `monkey`, `token_count`, `secret_name`: their last word
    says what they are, and it is not a secret.
    """
    words = _words(name)
    if not words:
        return None
    last = words[-1]
    if last in _SECRET_LAST_WORDS:
        return _KIND_OF_WORD[last]
    if last == "key" and len(words) > 1 and words[-2] in _SECRET_KEY_QUALIFIERS:
        return f"{words[-2]}_key" if words[-2] in {"api", "access", "private", "secret"} else "key"
    compact = "".join(words)
    if compact in _COMPACT_SECRET_NAMES:
        return _KIND_OF_WORD.get(compact, "key")
    if _SECRET_ANY_WORD.intersection(words):
        return "password"
    return None


def redact_value(obj: Any, _depth: int = 0) -> Any:
    """Return a redacted copy of `obj` for logging.

    str is passed through `redact`; bytes are decoded (UTF-8, undecodable bytes
    replaced) and redacted; dict, list, tuple, set and frozenset are rebuilt with
    redacted members (sets become lists); a dict key for which `is_secret_key` answers
    has its whole value replaced, unless the value is None. None, bool, int and float
    are kept; any other object becomes its redacted `str()`, since that is what a log
    line would show. Nesting deeper than 32 levels is cut off. Never raises.
    """
    try:
        return _redact_value(obj, _depth)
    except Exception:
        return _mark("unredactable")


def _redact_value(obj: Any, depth: int) -> Any:
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, str):
        return redact(obj)
    if depth >= _MAX_DEPTH:
        return _mark("too_deep")
    if isinstance(obj, bytes | bytearray | memoryview):
        return redact(bytes(obj).decode("utf-8", errors="replace"))
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            kind = is_secret_key(key) if isinstance(key, str) else None
            new_key = redact(key) if isinstance(key, str) else key
            if kind is not None and value is not None:
                out[new_key] = _mark(kind)
            else:
                out[new_key] = _redact_value(value, depth + 1)
        return out
    if isinstance(obj, tuple):
        return tuple(_redact_value(item, depth + 1) for item in obj)
    if isinstance(obj, list | set | frozenset):
        return [_redact_value(item, depth + 1) for item in obj]
    try:
        text = str(obj)
    except Exception:
        return _mark("unprintable")
    return redact(text)
