"""Enough of PNG to check a browser's screenshot: the pixels of an 8-bit RGB or RGBA image (no library)."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {2: 3, 6: 4}  # colour type -> bytes per pixel: RGB, RGBA


@dataclass(frozen=True)
class Image:
    width: int
    height: int
    channels: int
    rows: list[bytes] = field(repr=False)  # unfiltered scanlines

    def colours(self, x: int, y: int, width: int, height: int) -> set[bytes]:
        """The distinct colours inside a rectangle (clipped to the image)."""
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + width), min(self.height, y + height)
        c = self.channels
        found: set[bytes] = set()
        for row in self.rows[y0:y1]:
            line = row[x0 * c : x1 * c]
            found.update(line[i : i + 3] for i in range(0, len(line), c))
        return found


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, prior: bytes, bpp: int) -> bytes:
    if kind == 1:
        for i in range(bpp, len(line)):
            line[i] = (line[i] + line[i - bpp]) & 0xFF
    elif kind == 2:
        for i in range(len(line)):
            line[i] = (line[i] + prior[i]) & 0xFF
    elif kind == 3:
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prior[i]) >> 1)) & 0xFF
    elif kind == 4:
        for i in range(len(line)):
            left = line[i - bpp] if i >= bpp else 0
            upper_left = prior[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + _paeth(left, prior[i], upper_left)) & 0xFF
    return bytes(line)


def read(path: Path) -> Image:
    """The image at `path`; AssertionError naming what is not supported (interlaced, palette, 16-bit)."""
    data = path.read_bytes()
    assert data.startswith(SIGNATURE), f"{path} is not a PNG"
    at, idat, header = 8, b"", None
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    assert header is not None, f"{path} has no IHDR"
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in CHANNELS and not interlace, f"{path}: unsupported PNG {header}"
    bpp = CHANNELS[colour]
    raw, stride = zlib.decompress(idat), width * bpp + 1
    rows: list[bytes] = []
    prior = bytes(width * bpp)
    for y in range(height):
        start = y * stride
        prior = _unfilter(raw[start], bytearray(raw[start + 1 : start + stride]), prior, bpp)
        rows.append(prior)
    return Image(width, height, bpp, rows)
