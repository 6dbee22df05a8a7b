"""JetStream fast batch publishing (nats-server 2.14+, `allow_batched` streams): the bulk path's wire protocol.

A fast batch is a run of ordinary publishes into one stream, each persisted as it
arrives, whose reply subjects carry the batch protocol:

    <inbox>.<flow>.fail.<batch-seq>.<operation>.$FI

where the inbox's last token is the batch id, `flow` asks the server to acknowledge
every `flow` messages, `fail` makes the server abandon the batch at the first gap,
and the operation is 0 for the first message, 1 for the next ones and 2 for the one
that commits. The server answers on those subjects with frames:

    {"type": "ack", "seq": N, "msgs": M}        persisted through batch sequence N; cadence now M
    {"type": "gap", "last_seq": N, "seq": M}    messages N+1..M-1 never arrived (batch abandoned)
    {"type": "err", "seq": N, "error": {...}}   message N was refused (batch abandoned)
    {"stream": S, "seq": Q, "batch": B, "count": C}   terminal: the batch ended, C messages, last at Q
    {"error": {...}, "stream": S, "seq": 0}     terminal: the batch failed

One acknowledgement for `flow` messages instead of one each is what makes this path
fast: the client no longer parses 100,000 replies. Each message still carries its
`Nats-Msg-Id`, so a retried append is deduplicated event by event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec

from core.store import acks
from core.store.acks import ApiError
from core.store.wire import Message

OP_START, OP_ADD, OP_COMMIT = 0, 1, 2


class Frame(msgspec.Struct, frozen=True):
    """Any frame the server sends back for a fast batch; which fields are set tells which frame it is."""

    type: str | None = None
    seq: int = 0
    msgs: int = 0
    last_seq: int = 0
    stream: str = ""
    batch: str = ""
    count: int = 0
    error: ApiError | None = None

    @property
    def terminal(self) -> bool:
        return self.type is None


_frame_decoder = msgspec.json.Decoder(Frame)


def parse_frame(data: bytes) -> Frame:
    """Decode a fast-batch frame; a garbled one becomes a terminal error frame (pure)."""
    try:
        return _frame_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        return Frame(error=ApiError(code=500, description=f"unreadable batch acknowledgement: {exc}"))


def new_batch_inbox(inbox_prefix: str) -> str:
    """An inbox whose last token is a fresh batch id (the server reads the id from there)."""
    return f"{inbox_prefix}.{uuid.uuid4().hex}"


def reply_subject(inbox: str, flow: int, batch_seq: int, operation: int) -> str:
    return f"{inbox}.{flow}.fail.{batch_seq}.{operation}.$FI"


def frames(messages: Sequence[Message], *, inbox: str, flow: int, first_seq: int, last_seq: int) -> bytes:
    """The frames of messages numbered from `first_seq` in a batch that commits at `last_seq` (pure).

    The hot loop of bulk appends, so it writes the HPUB frames directly (wire.hpub's format;
    subjects, ids and inboxes are ASCII, so string lengths are byte lengths).
    """
    out = bytearray()
    prefix = f"{inbox}.{flow}.fail."
    for batch_seq, message in enumerate(messages, first_seq):
        operation = OP_COMMIT if batch_seq == last_seq else OP_START if batch_seq == 1 else OP_ADD
        headers = f"NATS/1.0\r\n{acks.MSG_ID}: {message.event_id}\r\n\r\n"
        size = len(headers)
        reply = f"{prefix}{batch_seq}.{operation}.$FI"
        out += f"HPUB {message.subject} {reply} {size} {size + len(message.payload)}\r\n{headers}".encode()
        out += message.payload
        out += b"\r\n"
    return bytes(out)
