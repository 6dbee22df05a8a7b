"""The frames of a chained append: each message expects its place by sequence, and from the second on by id."""

from __future__ import annotations

from core.store.acks import ApiError, PubAck
from core.store.chained import ChainAcks, chain_frames, refusal
from core.store.wire import Message


def headers_of(frames: bytes) -> list[dict[str, str]]:
    found = []
    for block in frames.split(b"HPUB ")[1:]:
        lines = block.split(b"\r\n")
        found.append(dict(line.decode().split(": ", 1) for line in lines[2:] if b": " in line))
    return found


def test_each_message_expects_the_one_before_it() -> None:
    messages = [Message("mesh.audit.a.b", b"{}", f"id-{i}") for i in range(3)]
    frames = chain_frames(messages, after_seq=41, inbox="_INBOX.x")
    assert headers_of(frames) == [
        {"Nats-Msg-Id": "id-0", "Nats-Expected-Last-Sequence": "41"},
        {"Nats-Msg-Id": "id-1", "Nats-Expected-Last-Sequence": "42", "Nats-Expected-Last-Msg-Id": "id-0"},
        {"Nats-Msg-Id": "id-2", "Nats-Expected-Last-Sequence": "43", "Nats-Expected-Last-Msg-Id": "id-1"},
    ]
    assert [line.split()[2] for line in frames.split(b"\r\n") if line.startswith(b"HPUB")] == [
        b"_INBOX.x.0", b"_INBOX.x.1", b"_INBOX.x.2"
    ]  # fmt: skip


def test_the_stored_prefix_ends_at_the_first_refusal_or_duplicate() -> None:
    messages = [Message("mesh.audit.a.b", b"{}", f"id-{i}") for i in range(3)]
    wrong = ApiError(code=400, err_code=10070, description="wrong last msg ID: id-x")
    chain = ChainAcks([PubAck("AUDIT", 5), PubAck(error=wrong), PubAck(error=wrong)])
    assert chain.stored() == [PubAck("AUDIT", 5)]
    assert "expected last sequence 5" in str(refusal(chain, messages, after_seq=4))
    assert ChainAcks([PubAck("AUDIT", 5, duplicate=True)]).stored() == []
    assert refusal(ChainAcks([PubAck("AUDIT", 5)]), messages[:1], after_seq=4) is None
