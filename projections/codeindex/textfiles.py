"""Decide whether a file's bytes are text the index can read, and decode them.

`classify(data)` returns the decoded text, or a `Skip` with a reason and a message that
names the file's problem without quoting any of its content (the content may hold secrets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.events.code import SkipReason

__all__ = ["DEFAULT_MAX_BYTES", "Skip", "classify", "line_starts", "normalize_newlines"]

DEFAULT_MAX_BYTES: Final = 1024 * 1024

# Git calls a blob binary when its first 8000 bytes hold a NUL; we look at the whole file
# (memchr is cheap) and also at the share of control characters, which catches binary
# formats that happen to have no NUL early (compressed data, many image headers).
_SNIFF_BYTES: Final = 8000
_MAX_CONTROL_SHARE: Final = 0.10
# C0 control characters other than tab, newline, vertical tab, form feed, carriage return
# and escape (ANSI colour codes in logs); DEL counts as control too.
_CONTROL: Final = bytes(b for b in range(32) if b not in b"\t\n\v\f\r\x1b") + b"\x7f"
_BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class Skip:
    """Why a file is not indexed as text."""

    reason: SkipReason
    message: str


def classify(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str | Skip:
    """Return `data` decoded as UTF-8 text with `\\n` line ends, or why it is not text.

    Checked in this order: size over `max_bytes` ("too-large", without looking further),
    binary content ("binary": a NUL byte, or more than 10% control characters in the first
    8000 bytes), invalid UTF-8 ("invalid-utf-8", with the offset of the first bad byte).
    A UTF-8 byte-order mark is dropped; `\\r\\n` and `\\r` become `\\n` (as Python's tokenizer
    reads them), so line numbers agree with `ast` and with editors.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be 0 or more, not {max_bytes}")
    size = len(data)
    if size > max_bytes:
        return Skip("too-large", f"{size:,} bytes is over the {max_bytes:,}-byte limit for indexed files")
    nul = data.find(b"\0")
    if nul != -1:
        return Skip("binary", f"binary content: a NUL byte at offset {nul:,}")
    head = data[:_SNIFF_BYTES]
    if head:
        control = len(head) - len(head.translate(None, _CONTROL))
        if control > _MAX_CONTROL_SHARE * len(head):
            return Skip("binary", f"binary content: {control:,} control bytes in the first {len(head):,}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Only the offset: the bytes themselves could be part of a secret.
        return Skip("invalid-utf-8", f"not valid UTF-8: {exc.reason} at byte offset {exc.start:,}")
    if text.startswith(_BOM):
        text = text[1:]
    return normalize_newlines(text)


def normalize_newlines(text: str) -> str:
    """`\\r\\n` and lone `\\r` become `\\n`; nothing else is a line break here.

    `str.splitlines` would also break at form feeds, `\\x1c`..`\\x1e`, U+2028 and others,
    which `ast` and git do not count as lines, so the index always splits at `\\n` only.
    """
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def line_starts(text: str) -> list[int]:
    """The offset at which each `\\n`-separated line of `text` starts (line n at index n - 1)."""
    starts = [0]
    find = text.find
    position = find("\n")
    while position != -1:
        starts.append(position + 1)
        position = find("\n", position + 1)
    return starts
