"""Which of two artifact versions is older (pure, no `packaging`: the device does not install it).

Versions are compared the way semantic versions read, and anything else still in a stable way:

- "+build" metadata is ignored: "1.2.0+b7" is "1.2.0";
- the release part is split at dots; numeric parts compare as numbers ("1.10" > "1.9"),
  trailing zero parts do not count ("1.2" is "1.2.0"), and a part with letters compares
  after every number, as text ("1.2.x" > "1.2.9");
- a pre-release after the first "-" comes before its release ("1.2.0-rc.2" < "1.2.0"),
  pre-releases comparing part by part like releases ("rc.2" < "rc.10").
"""

from __future__ import annotations

Part = tuple[int, int, str]  # (0, number, "") for a number, (1, 0, text) for text: numbers first


def _parts(text: str) -> tuple[Part, ...]:
    parts = [(0, int(piece), "") if piece.isdigit() else (1, 0, piece) for piece in text.split(".")]
    while parts and parts[-1] == (0, 0, ""):
        parts.pop()
    return tuple(parts)


def _key(version: str) -> tuple[tuple[Part, ...], int, tuple[Part, ...]]:
    release, dash, pre = version.split("+", 1)[0].partition("-")
    # A release without a pre-release sorts after all of its pre-releases.
    return _parts(release), 0 if dash else 1, _parts(pre)


def is_older(a: str, b: str) -> bool:
    """True when version `a` comes before version `b`."""
    return _key(a) < _key(b)
