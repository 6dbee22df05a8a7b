"""core.units: durations and sizes as people write them in configuration."""

from __future__ import annotations

import pytest

from core.units import format_duration, format_size, parse_duration, parse_size

GiB = 1024**3


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("1h30m", 5400.0),
        ("0s", 0.0),
        ("1.5", 1.5),
        (" 45 ", 45.0),
        (10, 10.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5x", "-1s", "-1", "nan", "inf", "1M", "1h 30m", "s", True, None])
def test_parse_duration_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512KB", 512 * 1024),
        ("256MB", 256 * 1024**2),
        ("10GB", 10 * GiB),
        ("1.5GiB", 3 * GiB // 2),
        ("2 tib", 2 * 1024**4),
        ("100", 100),
        ("100B", 100),
        (4096, 4096),
    ],
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1K", "lots", "-1", "1.5.5GB", -3, True, 1.5])
def test_parse_size_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [(0.5, "500ms"), (30, "30s"), (120, "2m"), (0, "0s"), (5400, "90m")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (100, "100B"),
        (1024, "1KB"),
        (1536, "1536B"),
        (64 * 1024, "64KB"),
        (256 * 1024**2, "256MB"),
        (10 * GiB, "10GB"),
        (3 * GiB // 2, "1536MB"),
        (2 * 1024**4, "2TB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size
