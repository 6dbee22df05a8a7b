"""Find the secrets in a text file, redact them, and describe them without their values.

    scan = scan_secrets(text, path="app/settings.py", hash_key=key)
    scan.findings   # SecretFinding(type="aws-access-key", line=12, severity="high", value_hash="9f…")
    scan.redacted   # the text with each value replaced by "[REDACTED:aws-access-key]"

Detection is detect-secrets' default plugin set with its default filters (run fast, see
`_detect_secrets`), plus our own detectors for what it misses (`_own_detectors`): whole
private-key blocks, passwords in URLs, GitHub fine-grained tokens and NATS nkey seeds.

Types are short slugs (`TYPES` maps detect-secrets' names onto them) and each slug has an
explicit severity (`SEVERITY`): high for a credential's own shape, low for heuristics.
Where detectors overlap, one finding is kept: of two on the same characters the more
telling type; a detection inside a larger one is dropped unless it outranks it. A value of
12 characters or more is also redacted wherever else it occurs in the text (as a secret
must not leak through a second mention), without a finding of its own.

Redaction keeps the line structure: a value that spans lines is replaced by its marker
followed by as many newlines, so line numbers of the redacted text equal the original's.

Nothing here keeps a value: spans are offsets, findings carry an HMAC-SHA256 of the value
under a key the caller passes in, and no repr or message quotes text.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from core.events.code import SecretFinding, Severity
from projections.codeindex import _detect_secrets, _own_detectors
from projections.codeindex.textfiles import line_starts

__all__ = [
    "PROPAGATE_MIN_LENGTH",
    "SEVERITY",
    "TYPES",
    "SecretScan",
    "SecretSpan",
    "find_secrets",
    "findings",
    "keyed_hash",
    "marker",
    "redact",
    "redact_range",
    "scan_secrets",
    "severity_of",
    "slug_for",
]

# detect-secrets' secret type names onto our slugs.
TYPES: Final[Mapping[str, str]] = {
    "AWS Access Key": "aws-access-key",
    "Artifactory Credentials": "artifactory-token",
    "Azure Storage Account access key": "azure-storage-key",
    "Base64 High Entropy String": "high-entropy-string",
    "Basic Auth Credentials": "basic-auth-url",
    "Cloudant Credentials": "cloudant-credentials",
    "Discord Bot Token": "discord-token",
    "GitHub Token": "github-token",
    "GitLab Token": "gitlab-token",
    "Hex High Entropy String": "high-entropy-string",
    "IBM COS HMAC Credentials": "ibm-cos-hmac-key",
    "IBM Cloud IAM Key": "ibm-cloud-iam-key",
    "JSON Web Token": "jwt",
    "Mailchimp Access Key": "mailchimp-key",
    "NPM tokens": "npm-token",
    "OpenAI Token": "openai-key",
    "Private Key": "private-key",
    "Public IP (ipv4)": "public-ip",
    "PyPI Token": "pypi-token",
    "Secret Keyword": "secret-keyword",
    "SendGrid API Key": "sendgrid-key",
    "Slack Token": "slack-token",
    "SoftLayer Credentials": "softlayer-credentials",
    "Square OAuth Secret": "square-oauth-secret",
    "Stripe Access Key": "stripe-key",
    "Telegram Bot Token": "telegram-token",
    "Twilio API Key": "twilio-key",
}

# high: the shape of a specific credential, nearly always real and usable as it stands.
# low: a guess from context (a secret-sounding name, randomness, an address), often wrong.
# A slug missing here (a plugin of a later detect-secrets) counts as high: failing closed.
SEVERITY: Final[Mapping[str, Severity]] = {
    "artifactory-token": "high",
    "aws-access-key": "high",
    "azure-storage-key": "high",
    "basic-auth-url": "high",
    "cloudant-credentials": "high",
    "discord-token": "high",
    "github-token": "high",
    "gitlab-token": "high",
    "ibm-cloud-iam-key": "high",
    "ibm-cos-hmac-key": "high",
    "jwt": "high",  # a bearer token works as it stands
    "mailchimp-key": "high",
    "nkey-seed": "high",
    "npm-token": "high",
    "openai-key": "high",
    "private-key": "high",
    "pypi-token": "high",
    "sendgrid-key": "high",
    "slack-token": "high",
    "softlayer-credentials": "high",
    "square-oauth-secret": "high",
    "stripe-key": "high",
    "telegram-token": "high",
    "twilio-key": "high",
    "high-entropy-string": "low",
    "public-ip": "low",
    "secret-keyword": "low",
}
# How much a type says about a value, for choosing between detections of the same
# characters: a provider's key over a password in a URL (a token can be both) over the
# catch-all heuristics. Unlisted types are provider types.
_SPECIFICITY: Final[Mapping[str, int]] = {
    "basic-auth-url": 1,
    "high-entropy-string": 0,
    "public-ip": 0,
    "secret-keyword": 0,
}

# Values at least this long are also redacted at every other occurrence in the text. Shorter
# ones ("test", "hunter2") would take ordinary words and identifiers with them.
PROPAGATE_MIN_LENGTH: Final = 12


def slug_for(detect_secrets_type: str) -> str:
    """Our slug for a detect-secrets type name; an unknown name is slugified."""
    known = TYPES.get(detect_secrets_type)
    if known is not None:
        return known
    return re.sub(r"[^a-z0-9]+", "-", detect_secrets_type.lower()).strip("-") or "secret"


def severity_of(slug: str) -> Severity:
    """The severity of a type (`SEVERITY`); unknown types are high."""
    return SEVERITY.get(slug, "high")


def marker(slug: str) -> str:
    """What stands in the text in place of a value of this type."""
    return f"[REDACTED:{slug}]"


def keyed_hash(value: str, key: bytes) -> str:
    """Hex HMAC-SHA256 of `value` (UTF-8) under `key`.

    Raises ValueError for an empty key: an unkeyed hash of a short password can be reversed
    by trying candidates.
    """
    if not key:
        raise ValueError("the hash key for secret findings is empty: pass the index's secret key")
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class SecretSpan:
    """Where a secret value lies in the text: offsets and its type, never the value.

    `reported` is False for a further occurrence of a reported value: it is redacted but is
    not a finding of its own.
    """

    type: str
    severity: Severity
    line: int  # 1-based line of `start`
    start: int
    end: int
    reported: bool = True

    @property
    def rank(self) -> tuple[bool, int, bool]:
        return (self.severity == "high", _SPECIFICITY.get(self.type, 2), self.reported)


@dataclass(frozen=True, slots=True)
class SecretScan:
    """One file's secrets: where they are, the findings to record, and the redacted text."""

    spans: tuple[SecretSpan, ...]
    findings: tuple[SecretFinding, ...]
    redacted: str

    @property
    def has_high(self) -> bool:
        """Whether any finding is high-severity (block mode then indexes nothing)."""
        return any(finding.severity == "high" for finding in self.findings)

    def __repr__(self) -> str:
        # The redacted text is long; the findings say what matters.
        return f"SecretScan(findings={self.findings!r}, redacted=<{len(self.redacted)} characters>)"


def scan_secrets(text: str, *, path: str, hash_key: bytes) -> SecretScan:
    """Find, describe and redact every secret in `text` (see the module's docstring).

    `path` only picks path-dependent rules (keyword patterns by extension, lock files).
    Raises ValueError for an empty `hash_key`.
    """
    if not hash_key:
        raise ValueError("the hash key for secret findings is empty: pass the index's secret key")
    spans = find_secrets(text, path=path)
    return SecretScan(spans, findings(text, spans, hash_key=hash_key), redact(text, spans))


def find_secrets(text: str, *, path: str) -> tuple[SecretSpan, ...]:
    """Every place in `text` that holds a secret, in order of position."""
    starts = line_starts(text)

    def span(slug: str, start: int, end: int, *, reported: bool = True) -> SecretSpan:
        return SecretSpan(slug, severity_of(slug), bisect_right(starts, start), start, end, reported)

    found = [span(slug_for(hit.secret_type), hit.start, hit.end) for hit in _detect_secrets.scan(text, path=path)]
    found += [span(hit.type, hit.start, hit.end) for hit in _own_detectors.scan(text)]
    kept = _without_overlaps(found)
    again: list[SecretSpan] = []
    for value, spans in _long_values(text, kept).items():
        best = max(spans, key=lambda s: s.rank)
        position = text.find(value)
        while position != -1:
            again.append(span(best.type, position, position + len(value), reported=False))
            position = text.find(value, position + len(value))
    return tuple(_without_overlaps(kept + again)) if again else tuple(kept)


def _long_values(text: str, spans: Sequence[SecretSpan]) -> dict[str, list[SecretSpan]]:
    values: dict[str, list[SecretSpan]] = {}
    for span in spans:
        if span.end - span.start >= PROPAGATE_MIN_LENGTH:
            values.setdefault(text[span.start : span.end], []).append(span)
    return values


def _without_overlaps(spans: Sequence[SecretSpan]) -> list[SecretSpan]:
    """One span per stretch of text: see the module's docstring for which one is kept.

    Of spans on the same characters the best-ranked stays; a span inside a larger one goes
    unless it outranks every span that contains it. Partial overlaps all stay (the redaction
    merges them into one marker).
    """
    ordered = sorted(spans, key=lambda s: (s.start, -s.end, tuple(-int(part) for part in s.rank), s.type))
    kept: list[SecretSpan] = []
    open_spans: list[SecretSpan] = []  # kept spans that may still contain later ones
    for span in ordered:
        open_spans = [other for other in open_spans if other.end > span.start]
        if any(o.start <= span.start and span.end <= o.end and o.rank >= span.rank for o in open_spans):
            continue
        kept.append(span)
        open_spans.append(span)
    return kept


def _merged(spans: Sequence[SecretSpan]) -> list[tuple[int, int, str]]:
    """Overlapping spans as single stretches, each named by its best-ranked type."""
    merged: list[tuple[int, int, str]] = []
    best: SecretSpan | None = None
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if merged and span.start < merged[-1][1]:
            start, end, _ = merged[-1]
            if best is None or span.rank > best.rank:
                best = span
            merged[-1] = (start, max(end, span.end), best.type)
        else:
            best = span
            merged.append((span.start, span.end, span.type))
    return merged


def redact(text: str, spans: Sequence[SecretSpan]) -> str:
    """`text` with each span replaced by its marker; line numbers do not change."""
    return redact_range(text, spans, 0, len(text))


def redact_range(text: str, spans: Sequence[SecretSpan], start: int, end: int) -> str:
    """The redacted form of `text[start:end]`.

    A span that reaches into the range is replaced as a whole by its marker (plus the
    newlines of its part inside the range), so no piece of a value is ever left.
    """
    pieces: list[str] = []
    cursor = start
    for span_start, span_end, slug in _merged(spans):
        if span_end <= start or span_start >= end:
            continue
        if span_start > cursor:
            pieces.append(text[cursor:span_start])
        inside_start, inside_end = max(span_start, start), min(span_end, end)
        pieces.append(marker(slug) + "\n" * text.count("\n", inside_start, inside_end))
        cursor = max(cursor, inside_end)
    pieces.append(text[cursor:end])
    return "".join(pieces)


def findings(text: str, spans: Sequence[SecretSpan], *, hash_key: bytes) -> tuple[SecretFinding, ...]:
    """One finding per reported span (equal ones once), each with the keyed hash of its value."""
    out: dict[SecretFinding, None] = {}
    for span in spans:
        if span.reported:
            value_hash = keyed_hash(text[span.start : span.end], hash_key)
            out[SecretFinding(type=span.type, line=span.line, severity=span.severity, value_hash=value_hash)] = None
    return tuple(out)
