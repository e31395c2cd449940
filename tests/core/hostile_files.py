"""Small files that declare far more than they hold (issue 14: bounded cost for hostile
inputs), built in the test's own folder: a few KB to a MB each, never the gigabytes they
declare."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def jpeg_declaring(path: Path, width: int, height: int) -> Path:
    """A 16 x 16 JPEG whose frame header is patched to declare ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 100, 150)).save(buf, "JPEG", quality=50)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    path.write_bytes(bytes(data))
    return path


def png_declaring(path: Path, width: int, height: int, rows: int = 4) -> Path:
    """An RGB PNG declaring ``width`` x ``height`` that holds only ``rows`` rows of data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress((b"\0" + b"\0" * (3 * width)) * rows, 9)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def tiff_sharing_one_tile(path: Path, width: int, height: int, tile: int = 512) -> Path:
    """A single-level tiled RGB TIFF of ``width`` x ``height`` px whose tiles all point at
    one stored (uncompressed, mid-grey) tile: about 8 bytes a tile plus the tile itself."""
    across, down = -(-width // tile), -(-height // tile)
    n_tiles = across * down
    tile_bytes = tile * tile * 3
    entries = 11
    ifd_at = 8
    ifd_size = 2 + entries * 12 + 4
    bps_at = ifd_at + ifd_size
    offsets_at = bps_at + 6
    counts_at = offsets_at + 4 * n_tiles
    data_at = counts_at + 4 * n_tiles
    tags = sorted([
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 3, bps_at), (259, 3, 1, 1),
        (262, 3, 1, 2), (277, 3, 1, 3), (284, 3, 1, 1), (322, 3, 1, tile), (323, 3, 1, tile),
        (324, 4, n_tiles, offsets_at), (325, 4, n_tiles, counts_at),
    ])
    out = bytearray(b"II*\0" + struct.pack("<I", ifd_at))
    out += struct.pack("<H", entries)
    for tag, kind, count, value in tags:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 and count == 1 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, count) + packed
    out += struct.pack("<I", 0)
    out += struct.pack("<HHH", 8, 8, 8)
    out += struct.pack(f"<{n_tiles}I", *([data_at] * n_tiles))
    out += struct.pack(f"<{n_tiles}I", *([tile_bytes] * n_tiles))
    out += b"\x80" * tile_bytes
    path.write_bytes(bytes(out))
    return path
