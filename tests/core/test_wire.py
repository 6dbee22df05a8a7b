"""Our NATS frames, checked against nats-py's own encoder: the contract behind core.store.wire."""

from __future__ import annotations

import re

from nats.protocol.command import hpub_cmd

from core.store import fastbatch, wire
from core.store.wire import Message

MESSAGES = [Message(f"mesh.evt.device.d{i}.telemetry", f'{{"n": {i}}}'.encode(), f"{i:032x}") for i in range(1, 6)]


def test_an_hpub_frame_is_byte_for_byte_what_nats_py_sends() -> None:
    headers = wire.header_block([("Nats-Msg-Id", "abc"), ("Nats-Batch-Sequence", "3")])
    assert headers == b"NATS/1.0\r\nNats-Msg-Id: abc\r\nNats-Batch-Sequence: 3\r\n\r\n"
    assert wire.hpub("a.b", "_INBOX.x", headers, b"payload") == hpub_cmd("a.b", "_INBOX.x", headers, b"payload")


def test_an_hpub_frame_without_reply_has_no_reply_field() -> None:
    assert wire.hpub("a.b", "", b"NATS/1.0\r\n\r\n", b"xy") == b"HPUB a.b 12 14\r\nNATS/1.0\r\n\r\nxy\r\n"


def test_atomic_batch_frames_number_every_message_and_commit_the_last() -> None:
    data = wire.batch_frames(MESSAGES, batch_id="b1", reply="_INBOX.r", expected_last_subject_seq=7)
    frames = data.split(b"HPUB ")[1:]
    assert len(frames) == len(MESSAGES)
    for position, frame in enumerate(frames, 1):
        assert f"Nats-Batch-Sequence: {position}\r\n".encode() in frame
        assert b"Nats-Batch-Id: b1\r\n" in frame
        assert (b"Nats-Batch-Commit: 1" in frame) == (position == len(MESSAGES))
        assert (b"_INBOX.r" in frame.split(b"\r\n")[0]) == (position == len(MESSAGES))
        assert (b"Nats-Expected-Last-Subject-Sequence: 7" in frame) == (position == 1)


def test_an_atomic_batch_can_expect_the_streams_last_sequence_on_its_first_message() -> None:
    data = wire.batch_frames(MESSAGES, batch_id="b2", reply="_INBOX.r", expected_last_seq=41)
    frames = data.split(b"HPUB ")[1:]
    assert [b"Nats-Expected-Last-Sequence: 41\r\n" in frame for frame in frames] == [True] + [False] * 4
    assert b"Subject-Sequence" not in data


def test_fast_batch_frames_equal_hpub_frames_with_the_batch_reply_subjects() -> None:
    data = fastbatch.frames(MESSAGES[1:], inbox="_INBOX.x.batch9", flow=50, first_seq=2, last_seq=5)
    expected = b"".join(
        wire.hpub(
            m.subject,
            fastbatch.reply_subject("_INBOX.x.batch9", 50, seq, 2 if seq == 5 else 1),
            wire.header_block([("Nats-Msg-Id", m.event_id)]),
            m.payload,
        )
        for seq, m in enumerate(MESSAGES[1:], 2)
    )
    assert data == expected


def test_the_first_fast_batch_message_starts_the_batch() -> None:
    data = fastbatch.frames(MESSAGES[:2], inbox="_INBOX.y.b", flow=10, first_seq=1, last_seq=9)
    replies = re.findall(rb"HPUB \S+ (\S+) ", data)
    assert replies == [b"_INBOX.y.b.10.fail.1.0.$FI", b"_INBOX.y.b.10.fail.2.1.$FI"]


def test_fast_batch_frames_parse_into_their_kinds() -> None:
    assert fastbatch.parse_frame(b'{"type":"ack","seq":100,"msgs":100}').seq == 100
    terminal = fastbatch.parse_frame(b'{"stream":"EVENTS","seq":42,"batch":"b","count":9}')
    assert terminal.terminal and terminal.count == 9
    failed = fastbatch.parse_frame(b'{"error":{"code":400,"err_code":10207,"description":"bad"},"seq":0}')
    assert failed.terminal and failed.error is not None and failed.error.err_code == 10207
    garbled = fastbatch.parse_frame(b"{nope")
    assert garbled.terminal and garbled.error is not None
