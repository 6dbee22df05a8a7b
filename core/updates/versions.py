"""Which of two artifact versions is older (pure): what the downgrade check and "the latest version" agree on.

Versions are dotted, as people write them: `1.10.2` is newer than `1.9.7` (numbers compare as
numbers, other parts as text, a number before text), a pre-release is older than its release
(`2.0.0-rc.1` < `2.0.0`, semver's rule), and build metadata after `+` does not count
(`2.0.0+b7` and `2.0.0+b8` are the same version for ordering; neither is older).
"""

from __future__ import annotations

import re

_PARTS = re.compile(r"[._]")

Part = tuple[int, int | str]  # (0, number) sorts before (1, text)


def _parts(text: str) -> tuple[Part, ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _PARTS.split(text) if part)


def version_key(version: str) -> tuple[tuple[Part, ...], int, tuple[Part, ...]]:
    """A key that sorts versions oldest first (pure)."""
    release, _, pre = version.partition("+")[0].partition("-")
    # a release without a pre-release sorts after every pre-release of it
    return _parts(release), 0 if pre else 1, _parts(pre)


def is_older(a: str, b: str) -> bool:
    """True if version `a` comes before version `b` (pure)."""
    return version_key(a) < version_key(b)


def latest(versions: list[str]) -> str | None:
    """The newest of `versions`, None if there are none (pure)."""
    return max(versions, key=version_key, default=None)
