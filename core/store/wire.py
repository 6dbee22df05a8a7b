"""NATS protocol frames for JetStream publishes, encoded here and written to nats-py in one piece.

Why not `Client.publish()` for the bulk path: nats-py builds every frame in Python
(about 10 µs with headers) and queues each one as its own buffer, and asyncio's TLS
transport encrypts every buffer as a separate TLS record: 500 records for a batch of
500 events, each costing the client and the server. Encoding a whole batch into one
buffer here makes it one write and a handful of records.

The only private nats-py calls are `Client._send_command` and `Client._flush_pending`,
the two that nats-py's own `publish()` makes after building its frame; `nats-py` is
pinned below 3 and tests/core/test_wire.py checks our frames byte for byte against
nats-py's own `hpub_cmd` so a change there is caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.client import Client

from core.store import acks

_HEADER_LINE = "NATS/1.0\r\n"


@dataclass(frozen=True, slots=True)
class Message:
    """One event ready to publish: its subject, encoded payload and id."""

    subject: str
    payload: bytes
    event_id: str


def header_block(headers: Sequence[tuple[str, str]]) -> bytes:
    """The header section of an HPUB frame (pure). Keys and values must not contain CR or LF."""
    return (_HEADER_LINE + "".join(f"{key}: {value}\r\n" for key, value in headers) + "\r\n").encode()


def hpub(subject: str, reply: str, headers: bytes, payload: bytes) -> bytes:
    """One HPUB frame (pure)."""
    head = (
        f"HPUB {subject} {reply} {len(headers)} {len(headers) + len(payload)}\r\n"
        if reply
        else (f"HPUB {subject} {len(headers)} {len(headers) + len(payload)}\r\n")
    )
    return head.encode() + headers + payload + b"\r\n"


def batch_frames(
    batch: Sequence[Message],
    *,
    batch_id: str,
    reply: str,
    expected_last_subject_seq: int | None = None,
    expected_last_seq: int | None = None,
) -> bytes:
    """The frames of one atomic batch (pure): messages numbered from 1, the first carrying the expected
    last subject sequence and the expected last stream sequence if any (the server checks them on the
    first message only), the last one committing the batch and asking for `reply`.
    """
    out = bytearray()
    shared = f"{_HEADER_LINE}{acks.BATCH_ID}: {batch_id}\r\n{acks.MSG_ID}: "
    last = len(batch)
    for position, message in enumerate(batch, 1):
        headers = f"{shared}{message.event_id}\r\n{acks.BATCH_SEQUENCE}: {position}\r\n"
        if position == 1 and expected_last_subject_seq is not None:
            headers += f"{acks.EXPECTED_LAST_SUBJECT_SEQ}: {expected_last_subject_seq}\r\n"
        if position == 1 and expected_last_seq is not None:
            headers += f"{acks.EXPECTED_LAST_SEQ}: {expected_last_seq}\r\n"
        if position == last:
            headers += f"{acks.BATCH_COMMIT}: 1\r\n"
        out += hpub(message.subject, reply if position == last else "", (headers + "\r\n").encode(), message.payload)
    return bytes(out)


async def write(nc: Client, frames: bytes) -> None:
    """Queue `frames` on the connection and kick its flusher, as `Client.publish()` does.

    While the client reconnects the frames wait in its pending buffer, as published
    messages do; on a closed connection this raises nats.errors.ConnectionClosedError.
    """
    if nc.is_closed:
        raise nats.errors.ConnectionClosedError
    await nc._send_command(frames)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
