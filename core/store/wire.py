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

import nats.errors
from nats.aio.client import Client

from core.store import acks

_HEADER_LINE = "NATS/1.0\r\n"


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
    subjects: Sequence[str],
    payloads: Sequence[bytes],
    event_ids: Sequence[str],
    *,
    batch_id: str,
    reply: str,
    commit: bool = True,
    expected_last_subject_seq: int | None = None,
) -> bytes:
    """The frames of an atomic batch (pure): every message numbered from 1, the last one committing
    and asking for `reply` (unless `commit` is false), the first one carrying the expected sequence if any.
    """
    frames = []
    last = len(subjects) - 1
    for index, (subject, payload, event_id) in enumerate(zip(subjects, payloads, event_ids, strict=True)):
        fields = [(acks.MSG_ID, event_id), (acks.BATCH_ID, batch_id), (acks.BATCH_SEQUENCE, str(index + 1))]
        if index == 0 and expected_last_subject_seq is not None:
            fields.append((acks.EXPECTED_LAST_SUBJECT_SEQ, str(expected_last_subject_seq)))
        is_commit = commit and index == last
        if is_commit:
            fields.append((acks.BATCH_COMMIT, "1"))
        frames.append(hpub(subject, reply if is_commit else "", header_block(fields), payload))
    return b"".join(frames)


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
