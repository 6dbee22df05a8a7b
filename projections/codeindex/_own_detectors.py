"""Our detectors for what detect-secrets misses.

- A private key's whole block. detect-secrets flags only the `BEGIN ... PRIVATE KEY` line
  (and not at all `BEGIN ENCRYPTED PRIVATE KEY`), so its body would reach the index. Here
  the block runs from the BEGIN line to the END line (to its last line of key material if
  the END is missing), whether the key stands on its own lines, in a triple-quoted string,
  in one string with `\\n` escapes or in concatenated strings; the same for PuTTY key files
  (header to `Private-MAC:`). Armor without key material is left to detect-secrets.
- Credentials in URLs, `scheme://user:password@host`: detect-secrets' basic-auth pattern
  stops at many characters that passwords contain (`!$&()*+,;=`); here the password runs
  to the last `@` of the authority and only the password is marked, so the redacted URL
  still shows user and host.
- GitHub fine-grained tokens (`github_pat_...`) and NATS nkey seeds (`SU...`, `SA...`, the
  credentials of this mesh), which detect-secrets does not know.

Each detector returns offsets, never values. Everything is precompiled and linear in the
text's length; a cheap substring test skips each regex on texts that cannot match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["OwnHit", "scan"]


@dataclass(frozen=True, slots=True)
class OwnHit:
    """Where one of our detectors found a secret: a slug and offsets, never the value."""

    type: str
    start: int
    end: int


# Four or five dashes with an optional space: PEM has five, SSH2 ("---- BEGIN SSH2 ...") four.
# Bounded repetitions only, so that long runs of dashes cannot make the search quadratic.
_ARMOR: Final = r"-{4,5} ?%s [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)? ?-{4,5}"
_PEM_BEGIN: Final = re.compile(_ARMOR % "BEGIN")
# What lies between the armor lines: base64, the "Proc-Type: 4,ENCRYPTED" style headers,
# SSH2's "Comment: user@host.example", line breaks, and when the key sits in source code,
# quotes, `\n` escapes and `+` between concatenated strings. Bounded: the largest RSA keys
# are about 12 KB.
_PEM_BODY: Final = r"[A-Za-z0-9+/=:,.@\s\"'\\-]{0,65536}"
_PEM_REST: Final = re.compile(_PEM_BODY + "?" + _ARMOR % "END")
_PEM_OPEN_BODY: Final = re.compile(_PEM_BODY)
# A line of key material: real keys have 64 or 70 base64 characters a line. Requiring one
# keeps code that merely names the armor (`line.startswith("-----BEGIN PRIVATE KEY-----")`)
# from being taken for a key (detect-secrets still reports such a line itself).
_KEY_MATERIAL: Final = re.compile(r"[A-Za-z0-9+/]{40,}")
_PUTTY_BEGIN: Final = re.compile(r"PuTTY-User-Key-File-\d+:")
_PUTTY_REST: Final = re.compile(r".{0,65536}?Private-MAC: *[0-9A-Fa-f]+", re.DOTALL)

# The match starts at "://" (a literal the regex engine finds fast) after a scheme's last
# character. The user part has no ":" or "@"; the password is greedy up to the last "@"
# before the path, query, fragment, whitespace or a quote, so an unencoded "@" in it is
# covered.
_URL_PASSWORD: Final = re.compile(r"(?<=[A-Za-z0-9+.\-])://[^\s:/?#@\"'`<>\[\]\\]*:(?P<password>[^\s/?#\"'`<>\\]+)@")
# Passwords in URLs that are clearly not values: templates ({pw}, <pw>, ${PW}, $PW,
# %(pw)s, %s) and masks (****, xxxx). Applied to our URL detector as detect-secrets'
# value filters apply to its own basic-auth plugin.
_PLACEHOLDER: Final = re.compile(
    r"\{[^{}]*\}|<[^<>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|%(?:\([A-Za-z_][A-Za-z0-9_]*\))?[sdr]|[*xX.\-_]+"
)

_GITHUB_FINE_GRAINED: Final = re.compile(r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}")
_NKEY_SEED: Final = re.compile(r"(?<![A-Z2-7])S[UOACNPX]A[A-Z2-7]{55}(?![A-Z2-7])")
_NKEY_SEED_PREFIXES: Final = ("SUA", "SOA", "SAA", "SCA", "SNA", "SPA", "SXA")


def scan(text: str) -> list[OwnHit]:
    """Every secret our detectors find in `text`, in order of position."""
    hits: list[OwnHit] = []
    if "PRIVATE KEY" in text:
        hits.extend(_private_keys(text))
    if "PuTTY-User-Key-File-" in text:
        for begin in _PUTTY_BEGIN.finditer(text):
            rest = _PUTTY_REST.match(text, begin.end())
            if rest and _KEY_MATERIAL.search(text, begin.end(), rest.end()):
                hits.append(OwnHit("private-key", begin.start(), rest.end()))
    if "://" in text:
        for match in _URL_PASSWORD.finditer(text):
            if not _PLACEHOLDER.fullmatch(match.group("password")):
                hits.append(OwnHit("basic-auth-url", match.start("password"), match.end("password")))
    if "github_pat_" in text:
        hits.extend(OwnHit("github-token", m.start(), m.end()) for m in _GITHUB_FINE_GRAINED.finditer(text))
    if any(prefix in text for prefix in _NKEY_SEED_PREFIXES):
        hits.extend(OwnHit("nkey-seed", m.start(), m.end()) for m in _NKEY_SEED.finditer(text))
    return sorted(hits, key=lambda hit: (hit.start, hit.end))


def _private_keys(text: str) -> list[OwnHit]:
    """PEM private key blocks: BEGIN to END, or to the last line of key material if the END
    is missing (a truncated key is still a key)."""
    hits: list[OwnHit] = []
    covered = 0
    for begin in _PEM_BEGIN.finditer(text):
        if begin.start() < covered:
            continue
        rest = _PEM_REST.match(text, begin.end())
        if rest:
            end = rest.end() if _KEY_MATERIAL.search(text, begin.end(), rest.end()) else None
        else:
            body = _PEM_OPEN_BODY.match(text, begin.end())
            lines = list(_KEY_MATERIAL.finditer(text, begin.end(), body.end() if body else begin.end()))
            end = lines[-1].end() if lines else None
        if end is not None:
            hits.append(OwnHit("private-key", begin.start(), end))
            covered = end
    return hits
