"""Argument types shared by several verbs (pure): each refuses bad input with what was wrong."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.errors import MahavishnuError


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seconds cannot be negative")
    return value


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def command_arguments(text: str) -> dict[str, Any]:
    """A command's --args: a JSON object (`cmd send`, `campaign create`); MahavishnuError saying what to pass."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MahavishnuError(
            f"--args is not JSON ({exc.msg} at column {exc.colno}): pass an object like '{{\"n\": 1}}'"
        ) from None
    if not isinstance(value, dict):
        raise MahavishnuError("--args must be a JSON object, like '{\"n\": 1}'")
    return value
