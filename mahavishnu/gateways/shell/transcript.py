"""A terminal session as audit records (pure): keystrokes and output, in order, batched.

The broker adds every keystroke and every piece of output to the session's Transcript as
it passes; the broker's flusher takes what gathered every FLUSH_S and records it. Runs of
one direction become one record ("shell.input" or "shell.output"), at most MAX_CHARS of
text each, numbered per session (`seq`) so a reader can put a session back together and
see that nothing is missing. Bytes are decoded as UTF-8 incrementally, so a character
split between two reads is not mangled; bytes that are not UTF-8 are kept as \\xNN escapes.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["input", "output"]
MAX_CHARS = 16 * 1024  # well under the largest audit entry (about 1 MB), and readable


@dataclass(frozen=True)
class Segment:
    direction: Direction
    text: str
    size: int  # bytes


@dataclass
class Transcript:
    """What one session typed and printed since the last `take()`, in order."""

    _segments: list[Segment] = field(default_factory=list)
    _decoders: dict[str, codecs.IncrementalDecoder] = field(default_factory=dict)
    seq: int = 0  # records taken so far
    bytes_in: int = 0
    bytes_out: int = 0

    def add(self, direction: Direction, data: bytes, *, final: bool = False) -> None:
        decoder = self._decoders.get(direction)
        if decoder is None:
            decoder = self._decoders[direction] = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
        text = decoder.decode(data, final=final)
        if direction == "input":
            self.bytes_in += len(data)
        else:
            self.bytes_out += len(data)
        if not text and not data:
            return
        last = self._segments[-1] if self._segments else None
        if last is not None and last.direction == direction and len(last.text) + len(text) <= MAX_CHARS:
            self._segments[-1] = Segment(direction, last.text + text, last.size + len(data))
            return
        while len(text) > MAX_CHARS:
            self._segments.append(Segment(direction, text[:MAX_CHARS], 0))
            text = text[MAX_CHARS:]
        self._segments.append(Segment(direction, text, len(data)))

    def finish(self) -> None:
        """Flush the decoders: a character cut off at the end is kept as escapes."""
        for direction in list(self._decoders):
            self.add(direction, b"", final=True)  # type: ignore[arg-type]

    def take(self) -> list[tuple[int, Segment]]:
        """The segments gathered since the last take, numbered; empty segments are dropped."""
        taken = [s for s in self._segments if s.text]
        self._segments = []
        numbered = []
        for segment in taken:
            self.seq += 1
            numbered.append((self.seq, segment))
        return numbered

    def pending(self) -> bool:
        return any(s.text for s in self._segments)


def record_entry(*, actor: str, device: str, session: str, seq: int, segment: Segment) -> dict[str, Any]:
    """The AuditTrail.record() arguments of one transcript segment."""
    return {
        "actor": actor,
        "category": "shell",
        "action": f"shell.{segment.direction}",
        "target": device,
        "details": {"session": session, "seq": seq, "text": segment.text},
    }


def session_text(entries: list[dict[str, Any]], direction: Direction) -> str:
    """One direction of a session put back together from its records' details, in seq order (for readers, tests)."""
    wanted = sorted((e for e in entries if e.get("action") == f"shell.{direction}"), key=lambda e: e["details"]["seq"])
    return "".join(e["details"]["text"] for e in wanted)
