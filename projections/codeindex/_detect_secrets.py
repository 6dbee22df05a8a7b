"""Run detect-secrets' default plugins and filters over a whole file, fast.

detect-secrets' own scan runs every plugin on every line and calls its filters through
dependency injection (an `inspect` call each time): about 4,000 lines/s of Python, which
would spend the whole indexing budget on secret scanning. Nearly all of that time goes to
lines that cannot match. Here each plugin first gets one search over the whole text, in C,
for the lines that could match it:

- a regex plugin: its own patterns, compiled with MULTILINE so that `^` and `$` hold at
  line ends as they do on a single line;
- where every match must contain one of a few literals (`_LITERALS`; the comments say why
  each is necessary): those literals, found with `str.find` in the lowercased text;
- the high-entropy plugins: a quoted run of the charset long enough to pass the limit;
- a plugin this module does not know (a later detect-secrets): every line.

A line is a candidate when any search match touches it. A per-line match is also a match
of the same pattern in the whole text, and the whole-text search either finds it or finds
another match that covers its start, so every line a per-line scan would report is a
candidate. The plugin's own `analyze_line` then runs on its candidates only, followed by
the default filters, called directly. The tests compare the result with detect-secrets'
own scan on realistic files.

Deliberate differences from `detect-secrets scan`:

- `# pragma: allowlist secret` is not honoured: the index must redact what it indexes, and
  a comment in a scanned repository must not be able to turn that off.
- The filters that silence false alarms (indirect references such as
  `secret = get_secret()`, lock files, swagger files) apply to the heuristic plugins only
  (keywords, entropy, IP addresses): a provider's key (`ghp_...`) is reported even inside a
  call.
- Every file is scanned whatever its extension (the caller decides what is text), and
  without detect-secrets' YAML/INI transformers: lines are scanned as they are.
- Plugins never verify a secret over the network: that needs a detect-secrets setting we
  never enable, and `scan` refuses to run if something in the process enabled it.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass
from functools import cache
from typing import Final

from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.filters import heuristic
from detect_secrets.plugins import keyword
from detect_secrets.plugins.base import BasePlugin, RegexBasedDetector
from detect_secrets.plugins.high_entropy_strings import HighEntropyStringsPlugin
from detect_secrets.settings import get_settings
from detect_secrets.util.filetype import determine_file_type

from projections.codeindex.textfiles import line_starts

__all__ = ["HEURISTIC_PLUGINS", "Hit", "plugin_names", "scan"]

# Plugins whose findings are guesses from context rather than a credential's shape.
HEURISTIC_PLUGINS: Final = frozenset(
    {"KeywordDetector", "Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}
)

# What every match of a plugin must contain, for a first search over the whole text.
# Literals are searched in the lowercased text with str.find when the text is ASCII (the
# usual case, and then lowercasing is exact) and with one case-insensitive regex otherwise.
# Each entry lists, per pattern of the plugin, a literal the pattern cannot match without;
# a case-insensitive search also finds what a case-sensitive pattern finds.
_LITERALS: Final[dict[str, tuple[str, ...]]] = {
    # (?:A3T[A-Z0-9]|ABIA|ACCA|AKIA|ASIA)...; aws.{0,20}?(?:key|...)...
    "AWSKeyDetector": ("a3t", "abia", "acca", "akia", "asia", "aws"),
    "AzureStorageKeyDetector": ("accountkey=",),
    "BasicAuthDetector": ("://",),
    # Assignments need key|pwd|pw|password|pass|token; the URL patterns need "cloudant.com".
    "CloudantDetector": ("key", "pw", "pass", "token", "cloudant"),
    "GitHubTokenDetector": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "GitLabTokenDetector": (
        *("glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "gr1348941"),
        *("glcbt-", "glimt-", "glptt-", "glagent-", "gloas-"),
    ),
    # Needs key|pwd|password|pass|token.
    "IbmCloudIamDetector": ("key", "pw", "pass", "token"),
    # Needs secret[-_]?(access)?[-_]?key.
    "IbmCosHmacDetector": ("secret",),
    "JwtTokenDetector": ("eyj",),
    # Every keyword pattern contains a denylist word (api_?key, auth_?key, ..., db_?pass,
    # key_?pass, password, passwd, pwd, secret, contraseña, contrasena); each holds one of these.
    "KeywordDetector": ("key", "pass", "pwd", "secret", "contrase"),
    "MailchimpDetector": ("-us",),
    "NpmDetector": ("_authtoken=",),
    "OpenAIDetector": ("t3blbkfj",),
    "PrivateKeyDetector": ("begin ", "putty-user-key-file-2"),
    "PypiTokenDetector": ("pypi-ag",),
    "SendGridDetector": ("sg.",),
    "SlackDetector": ("xox", "hooks.slack.com"),
    # Assignments need key|pwd|password|pass|token; the URL pattern needs "api.softlayer.com".
    "SoftlayerDetector": ("key", "pw", "pass", "token", "softlayer"),
    "SquareOAuthDetector": ("sq0csp-",),
    "StripeDetector": ("k_live_",),
}
# Plugins without a telling literal whose own patterns are slow to search.
_PATTERNS: Final[dict[str, re.Pattern[str]]] = {
    # Tokens start with AKC or AP[\dA-F] (case-sensitive, as the plugin).
    "ArtifactoryDetector": re.compile(r"AKC|AP[\dABCDEF]"),
    # a.b.c.d holds "<last digit of a>.<b>.<first digit of c>".
    "IPPublicDetector": re.compile(r"[0-9]\.[0-9]{1,3}\.[0-9]"),
}
# A second condition for the plugins whose keyword literals ("key", "pass") are common in
# code: their values are runs of at least 24 letters, digits, "_" or "-" (Cloudant
# [a-z]{24} or [0-9a-f]{64}, IBM IAM 44, IBM COS 48, SoftLayer 64 characters), so a line
# without such a run cannot match. Case-insensitive like the plugins, so that the same
# characters count as letters.
_LONG_RUN: Final = re.compile(r"[a-z0-9_\-]{24,}", re.IGNORECASE)
_ALSO: Final[dict[str, re.Pattern[str]]] = {
    "CloudantDetector": _LONG_RUN,
    "IbmCloudIamDetector": _LONG_RUN,
    "IbmCosHmacDetector": _LONG_RUN,
    "SoftlayerDetector": _LONG_RUN,
}
# The keyword plugin's pattern sets in which every pattern needs a quote (['"`]) on the
# line: the default set (Python, JavaScript, Java, ... and unknown types) and the C-family
# ones. The Go and config-file sets allow unquoted values.
_QUOTES_REQUIRED: Final = (
    keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP,
    keyword.COMMON_C_DENYLIST_REGEX_TO_GROUP,
    keyword.C_PLUS_PLUS_REGEX_TO_GROUP,
)
_QUOTE: Final = re.compile("[\"'`]")

_VERIFY_FILTER: Final = "detect_secrets.filters.common.is_ignored_due_to_verification_policies"


@dataclass(frozen=True, slots=True)
class Hit:
    """Where a plugin found a secret: offsets into the text, never the value itself."""

    secret_type: str  # detect-secrets' name for it, e.g. "AWS Access Key"
    line: int  # 1-based
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Plugin:
    plugin: BasePlugin
    heuristic: bool
    literals: tuple[str, ...] = ()  # lowercase; any of them marks a candidate line
    patterns: tuple[re.Pattern[str], ...] = ()  # any match marks the lines it touches
    also: re.Pattern[str] | None = None  # and then this must match on the line too
    # Neither: every line is a candidate (a plugin this module does not know).


def _entropy_pattern(plugin: HighEntropyStringsPlugin) -> re.Pattern[str]:
    # The plugin reports a quoted run of its charset whose Shannon entropy exceeds the limit.
    # A string of n characters has at most log2(n) bits of entropy per character, so the run
    # is longer than 2**limit: an opening quote and that many charset characters must occur.
    shortest = math.floor(2**plugin.entropy_limit) + 1
    return re.compile(r"['\"][" + re.escape(plugin.charset) + "]{" + str(shortest) + ",}")


def _entry(plugin: BasePlugin) -> _Plugin:
    name = type(plugin).__name__
    heuristic = name in HEURISTIC_PLUGINS
    if name in _LITERALS:
        return _Plugin(plugin, heuristic, literals=_LITERALS[name], also=_ALSO.get(name))
    if name in _PATTERNS:
        return _Plugin(plugin, heuristic, patterns=(_PATTERNS[name],))
    if isinstance(plugin, HighEntropyStringsPlugin):
        return _Plugin(plugin, heuristic, patterns=(_entropy_pattern(plugin),))
    if isinstance(plugin, RegexBasedDetector):
        patterns = tuple(re.compile(pattern.pattern, pattern.flags | re.MULTILINE) for pattern in plugin.denylist)
        return _Plugin(plugin, heuristic, patterns=patterns)
    return _Plugin(plugin, heuristic)


@cache
def _plugins() -> tuple[_Plugin, ...]:
    """detect-secrets' default plugin set (every plugin it ships), built once per process."""
    plugin_types: list[type[BasePlugin]] = list(get_mapping_from_secret_type_to_class().values())
    plugins = (_entry(plugin_type()) for plugin_type in plugin_types)
    return tuple(sorted(plugins, key=lambda entry: type(entry.plugin).__name__))


def plugin_names() -> tuple[str, ...]:
    """The class names of the plugins `scan` runs."""
    return tuple(type(entry.plugin).__name__ for entry in _plugins())


class _Candidates:
    """The candidate lines of one text, per literal and per pattern, each searched once."""

    def __init__(self, text: str, starts: list[int]) -> None:
        self._text = text
        self._starts = starts
        self._ascii = text.isascii()
        self._lowered = text.lower() if self._ascii else ""
        self._found: dict[str | re.Pattern[str], set[int]] = {}

    def lines(self, entry: _Plugin) -> set[int]:
        """0-based indexes of the lines on which `entry`'s plugin could find something."""
        if entry.literals:
            if self._ascii:
                return set().union(*(self._literal(literal) for literal in entry.literals))
            alternatives = "|".join(re.escape(literal) for literal in entry.literals)
            return self._pattern(re.compile(alternatives, re.IGNORECASE))
        if entry.patterns:
            return set().union(*(self._pattern(pattern) for pattern in entry.patterns))
        return set(range(len(self._starts)))

    def lines_matching(self, pattern: re.Pattern[str]) -> set[int]:
        """0-based indexes of the lines that a match of `pattern` touches."""
        return self._pattern(pattern)

    def _literal(self, literal: str) -> set[int]:
        if literal not in self._found:
            lines: set[int] = set()
            starts, last, find = self._starts, len(self._starts) - 1, self._lowered.find
            position = find(literal)
            while position != -1:
                index = bisect_right(starts, position) - 1
                lines.add(index)
                # One occurrence marks the line: go on from the next one.
                position = find(literal, starts[index + 1]) if index < last else -1
            self._found[literal] = lines
        return self._found[literal]

    def _pattern(self, pattern: re.Pattern[str]) -> set[int]:
        if pattern not in self._found:
            lines: set[int] = set()
            starts = self._starts
            for match in pattern.finditer(self._text):
                first = bisect_right(starts, match.start()) - 1
                last = bisect_right(starts, max(match.end() - 1, match.start())) - 1
                lines.update(range(first, last + 1))
            self._found[pattern] = lines
        return self._found[pattern]


def _keyword_needs_quotes(path: str) -> bool:
    """Whether every keyword pattern detect-secrets uses for this file type needs a quote."""
    chosen = keyword.REGEX_BY_FILETYPE.get(determine_file_type(path), keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP)
    return any(chosen is patterns for patterns in _QUOTES_REQUIRED)


def _filtered_out(plugin: BasePlugin, value: str, line: str) -> bool:
    """detect-secrets' default filters on a found value (heuristic.py), in its order."""
    return (
        heuristic.is_sequential_string(value)
        or heuristic.is_potential_uuid(value)
        or heuristic.is_likely_id_string(value, line, plugin)
        or heuristic.is_templated_secret(value)
        or heuristic.is_prefixed_with_dollar_sign(value)
        or heuristic.is_not_alphanumeric_string(value)
    )


def scan(text: str, *, path: str) -> list[Hit]:
    """Every secret detect-secrets' default plugins find in `text`, as offsets.

    `path` picks the keyword patterns by extension (quotes required in `.py`, not in
    `.ini`) and the lock/swagger file filters; nothing is read from it. A value that occurs
    several times on its line is reported at each place, extended to the end of its token
    (`_TOKEN_CHARS`); one that cannot be located (no plugin does that today) is reported as
    its whole line, so it is redacted all the same.
    """
    if _VERIFY_FILTER in get_settings().filters:
        raise RuntimeError(
            "detect-secrets is set to verify secrets over the network in this process; "
            "the code index never does that: remove the verification setting"
        )
    starts = line_starts(text)
    lines = text.split("\n")
    candidates = _Candidates(text, starts)
    quiet_file = heuristic.is_lock_file(path) or heuristic.is_swagger_file(path)
    hits: set[Hit] = set()
    for entry in _plugins():
        if entry.heuristic and quiet_file:
            continue
        indexes = candidates.lines(entry)
        if entry.also is not None:
            indexes = indexes & candidates.lines_matching(entry.also)
        if isinstance(entry.plugin, keyword.KeywordDetector) and _keyword_needs_quotes(path):
            indexes = indexes & candidates.lines_matching(_QUOTE)
        for index in sorted(indexes):
            # detect-secrets strips trailing whitespace before scanning a line.
            line = lines[index].rstrip()
            if not line or (entry.heuristic and heuristic.is_indirect_reference(line)):
                continue
            found = entry.plugin.analyze_line(filename=path, line=line, line_number=index + 1)
            for secret in found:
                value = secret.secret_value
                if not value or _filtered_out(entry.plugin, value, line):
                    continue
                hits.update(_locate(entry.plugin.secret_type, value, line, index, starts[index]))
    return sorted(hits, key=lambda hit: (hit.start, hit.end, hit.secret_type))


# Characters a token goes on with. Some plugins report less than the token: a capture group
# holding only the prefix (GitHub's "(ghp|gho|...)_[A-Za-z0-9_]{36}" reports "ghp") or a lazy
# tail (the JWT pattern stops before the signature). A located value is therefore extended
# to the right over these, so the whole token is redacted and hashed; a value that ends at a
# quote, a space or punctuation (nearly all) is unchanged.
_TOKEN_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _locate(secret_type: str, value: str, line: str, index: int, offset: int) -> list[Hit]:
    places = []
    position = line.find(value)
    while position != -1:
        end = position + len(value)
        while end < len(line) and line[end] in _TOKEN_CHARS:
            end += 1
        places.append(Hit(secret_type, index + 1, offset + position, offset + end))
        position = line.find(value, end)
    return places or [Hit(secret_type, index + 1, offset, offset + len(line))]
