"""JetStream publish acknowledgements and API errors, parsed without I/O."""

from __future__ import annotations

import msgspec

# Headers of the JetStream publish protocol.
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_MSG_ID = "Nats-Expected-Last-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"

# JetStream API error codes we act on (nats-server's errors.json).
ERR_WRONG_LAST_SEQUENCE = 10071
ERR_WRONG_LAST_MSG_ID = 10070
ERR_STREAM_NOT_FOUND = 10059
ERR_STREAM_NAME_IN_USE = 10058
ERR_BATCH_DUPLICATE_MSG_ID = 10201


class ApiError(msgspec.Struct, frozen=True):
    code: int = 0
    err_code: int = 0
    description: str = ""


class PubAck(msgspec.Struct, frozen=True):
    """The server's answer to a publish: where it stored the message, or why it did not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    domain: str | None = None
    batch: str | None = None
    count: int = 0
    error: ApiError | None = None


_ack_decoder = msgspec.json.Decoder(PubAck)


def parse_pub_ack(data: bytes) -> PubAck:
    """Decode a publish acknowledgement; a garbled one becomes an ack with an error."""
    try:
        return _ack_decoder.decode(data)
    except msgspec.MsgspecError as exc:
        return PubAck(error=ApiError(code=500, description=f"unreadable acknowledgement: {exc}"))
