"""Durations and byte sizes as people write them in configuration: "30s", "1.5GiB".

Pure functions; both raise ValueError with a message that says what is accepted.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final

__all__ = ["format_duration", "format_size", "parse_duration", "parse_size"]

_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d|w)")
_DURATION_HELP: Final = (
    'use a number of seconds or a number with a unit (ms, s, m, h, d, w), e.g. "500ms", "30s", "1h30m"'
)

# Binary multiples for both spellings, as nats-server reads "MB"/"GB" in its own config.
_SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 1024,
    "kib": 1024,
    "mb": 1024**2,
    "mib": 1024**2,
    "gb": 1024**3,
    "gib": 1024**3,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE: Final = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)")
_SIZE_HELP: Final = 'use a number of bytes or a number with a unit (B, KB, MB, GB, TB, or KiB...TiB), e.g. "256MB"'


def parse_duration(value: str | int | float) -> float:
    """Return `value` as seconds (a float >= 0).

    Accepts a number of seconds (int, float, or a string of one) or a string of one or
    more number+unit parts: "500ms", "30s", "2m", "1h", "7d", "1w", "1h30m". Units are
    lowercase ("M" could mean months). Raises ValueError for anything else, for negative
    values, NaN and infinity.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}; {_DURATION_HELP}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    else:
        raise ValueError(f"expected a duration, got {type(value).__name__}; {_DURATION_HELP}")
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _parse_duration_text(text: str) -> float:
    try:
        return float(text)  # a bare number of seconds; the caller rejects nan, inf and < 0
    except ValueError:
        pass
    position, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(text):
        return _bad_duration(text)
    return seconds


def _bad_duration(text: str) -> float:
    raise ValueError(f"not a duration: {text!r}; {_DURATION_HELP}")


def parse_size(value: str | int) -> int:
    """Return `value` as a number of bytes (an int >= 0).

    Accepts an int, or a string: a number with an optional unit, case-insensitive, with
    optional space: "512KB", "10GB", "1.5GiB", "100". KB/MB/GB/TB are binary multiples
    (1KB = 1024 bytes), like nats-server's own "MB". Fractions are rounded down to a
    whole byte. Raises ValueError for anything else or a negative value.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a size, got {value!r}; {_SIZE_HELP}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must be >= 0 bytes, got {value}")
        return value
    match = _SIZE.fullmatch(value.strip().lower())
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"not a size: {value!r}; {_SIZE_HELP}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:  # pragma: no cover - the pattern only lets numbers through
        raise ValueError(f"not a size: {value!r}; {_SIZE_HELP}") from exc
    return int(number * _SIZE_UNITS[match.group(2)])


def format_duration(seconds: float) -> str:
    """Return `seconds` in the shortest unit that shows it exactly ("30s", "2m", "500ms")."""
    for unit, size in sorted(_DURATION_UNITS.items(), key=lambda item: -item[1]):
        count = seconds / size
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    """Return `size` bytes in the largest unit that shows it exactly ("256MB", "64KB", "100B").

    The units are parse_size's binary ones, so parse_size(format_size(n)) == n.
    """
    for unit in ("tb", "gb", "mb", "kb"):
        factor = _SIZE_UNITS[unit]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit.upper()}"
    return f"{size}B"
