"""Small real image files for import tests, written by hand (Pillow is not a dependency)."""

import struct
import zlib


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, *, text_bytes: int = 0) -> bytes:
    """A valid black RGB PNG; `text_bytes` of tEXt make it as large as a test needs."""
    pixels = zlib.compress(b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height)))
    text = [_png_chunk(b"tEXt", b"Comment\x00" + b"x" * text_bytes)] if text_bytes else []
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)),
            *text,
            _png_chunk(b"IDAT", pixels),
            _png_chunk(b"IEND", b""),
        ]
    )


def _jpeg_segment(marker: int, data: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data


def jpeg_header_bytes(width: int, height: int, *, exif_bytes: int = 0) -> bytes:
    """A baseline JPEG's markers as far as image readers look for the size (SOI, APP0 JFIF, APP1 filler, SOF0),
    then EOI: no scan data, which nothing here decodes. `exif_bytes` of APP1 push the size that far in."""
    filler = [_jpeg_segment(0xE1, b"x" * min(60_000, exif_bytes - done)) for done in range(0, exif_bytes, 60_000)]
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"".join(
        [
            b"\xff\xd8",
            _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
            *filler,
            _jpeg_segment(0xC0, frame),
            b"\xff\xd9",
        ]
    )
