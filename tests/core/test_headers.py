"""Our header parser, checked against nats-py's own: the contract behind core.store.headers."""

from __future__ import annotations

import random

import pytest
from nats.aio.client import Client

from core.store.connection import MeshClient
from core.store.headers import parse_header_lines

CRAFTED = [
    b"",
    b"\r\n",
    b"Nats-Stream: EVENTS\r\nNats-Sequence: 42\r\n\r\n",
    b"Nats-Subject:mesh.evt.device.d1.telemetry\r\n",  # no space after the colon
    b"Name:\tvalue with\ttabs \r\n",
    b"Name: a: b: c\r\n",  # colons in the value
    b": no name\r\n",  # an empty name is kept, as nats-py keeps it
    b"no colon at all\r\nKept: yes\r\n",
    b"Two Words: skipped\r\nOne: kept\r\n",
    b"Sep\x1cName: skipped (\\x1c is a space to str.isspace)\r\n",
    b"  Padded  :  value  \r\n",
    b"Caf\xc3\xa9: non-ASCII name, skipped\r\n",
    b"Bad\xff: not UTF-8, skipped\r\n",
    b"Value: caf\xc3\xa9\r\n",
    b"Value: broken \xff byte\r\n",
    b"Nbsp: kept \xc2\xa0\r\n",  # U+00A0 around a value stays (bytes.strip() keeps it)
    b"Lone: cr\rinside\r\nLone-Lf: lf\ninside\r\n",
    b"Dup: first\r\nDup: second\r\n",
]


@pytest.mark.parametrize("raw", CRAFTED)
def test_a_crafted_block_parses_as_nats_py_parses_it(raw: bytes) -> None:
    assert parse_header_lines(raw) == Client._parse_header_lines(raw)


def test_random_blocks_parse_as_nats_py_parses_them() -> None:
    pieces = [b"\r\n", b"\r", b"\n", b":", b" ", b"\t", b"\x0b", b"\x1c", b"\x85", b"\xc2\xa0", b"\xff", b"\xe2\x80"]
    pieces += [b"\xc3\xa9", b"a", b"B", b"-", b"1", b"\x00", b"\x7f"]
    rng = random.Random(20261207)
    for _ in range(20_000):
        raw = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert parse_header_lines(raw) == Client._parse_header_lines(raw), raw


def test_the_mesh_client_uses_it() -> None:
    assert MeshClient._parse_header_lines is parse_header_lines


async def test_a_connection_reads_the_headers_a_message_was_sent_with(nc: Client) -> None:
    assert isinstance(nc, MeshClient)
    sub = await nc.subscribe("tests.headers")
    await nc.publish("tests.headers", b"x", headers={"Nats-Msg-Id": "abc", "Note": "caf\u00e9 au lait"})
    message = await sub.next_msg(timeout=5)
    assert message.headers == {"Nats-Msg-Id": "abc", "Note": "caf\u00e9 au lait"}
