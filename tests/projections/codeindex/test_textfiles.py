"""Which bytes the code index reads as text, and the reasons it gives for the rest."""

from __future__ import annotations

import gzip
import struct
import zlib

import pytest

from projections.codeindex.textfiles import DEFAULT_MAX_BYTES, Skip, classify, line_starts, normalize_newlines


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")


def test_utf8_text_is_decoded() -> None:
    assert classify("print('grüße')\n".encode()) == "print('grüße')\n"


def test_empty_file_is_empty_text() -> None:
    assert classify(b"") == ""


def test_line_ends_become_newlines_and_the_bom_goes() -> None:
    assert classify(b"\xef\xbb\xbfa = 1\r\nb = 2\rc = 3\n") == "a = 1\nb = 2\nc = 3\n"
    assert normalize_newlines("x\fy\u2028z") == "x\fy\u2028z"  # not line breaks for ast or git


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_png(), id="png"),
        pytest.param(gzip.compress(b"hello " * 100), id="gzip"),
        pytest.param(b"text\0with a nul", id="nul"),
        pytest.param("utf-16 text".encode("utf-16"), id="utf-16"),
        pytest.param(bytes(range(1, 32)) * 20, id="control-bytes"),
    ],
)
def test_binary_content_is_skipped(data: bytes) -> None:
    result = classify(data)
    assert isinstance(result, Skip)
    assert result.reason == "binary"
    assert result.message.startswith("binary content")


def test_a_few_control_characters_are_still_text() -> None:
    text = "log line with \x1b[31mcolour\x1b[0m and a bell\x07\n" * 20
    assert classify(text.encode()) == text


def test_over_the_size_limit_is_skipped_without_reading_further() -> None:
    result = classify(b"\0" * (DEFAULT_MAX_BYTES + 1))
    assert result == Skip("too-large", "1,048,577 bytes is over the 1,048,576-byte limit for indexed files")
    assert classify(b"x" * DEFAULT_MAX_BYTES) == "x" * DEFAULT_MAX_BYTES
    assert isinstance(classify(b"12345", max_bytes=4), Skip)


def test_invalid_utf8_names_the_offset_but_no_content() -> None:
    secret_ish = b"password = 'hunter2\xff\xfe'"
    result = classify(secret_ish)
    assert isinstance(result, Skip)
    assert result.reason == "invalid-utf-8"
    assert "offset 19" in result.message
    assert "hunter2" not in result.message


def test_latin1_text_is_invalid_utf8() -> None:
    result = classify("café = 1\n".encode("latin-1"))
    assert isinstance(result, Skip)
    assert result.reason == "invalid-utf-8"


def test_negative_limit_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        classify(b"", max_bytes=-1)


def test_line_starts_are_offsets_after_each_newline() -> None:
    assert line_starts("ab\n\ncd\n") == [0, 3, 4, 7]
    assert line_starts("") == [0]
