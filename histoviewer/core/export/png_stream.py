"""A PNG writer that takes the image in horizontal strips: memory is one strip, not the
image, so a whole-slide export can be a PNG as well as a TIFF.

8-bit RGB, non-interlaced; each scanline uses the "Sub" filter (the difference from the
pixel to its left), which compresses slide images far better than no filter and costs one
numpy subtraction per strip. Text chunks (``tEXt`` for Latin-1, ``iTXt`` otherwise) carry
the provenance.
"""

from __future__ import annotations

import struct
import zlib
from typing import BinaryIO

import numpy as np

__all__ = ["PngStripWriter"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IDAT_BYTES = 1 << 20


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _text_chunk(key: str, value: str) -> bytes:
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:
        # iTXt: keyword, 0, compression flag 0, method 0, empty language tag, 0, empty translated keyword, 0
        return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


class PngStripWriter:
    """Write an RGB PNG of ``width`` x ``height`` to an open binary file, strip by strip.

    ``add_rows`` takes uint8 (h, width, 3) arrays top to bottom; ``close`` checks that
    exactly ``height`` rows arrived and writes the end of the file.
    """

    def __init__(self, fh: BinaryIO, width: int, height: int, text: dict[str, str] | None = None,
                 level: int = 6) -> None:
        self.fh, self.width, self.height = fh, int(width), int(height)
        self.rows = 0
        self._z = zlib.compressobj(level)
        self._pending = bytearray()
        fh.write(_SIGNATURE)
        fh.write(_chunk(b"IHDR", struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)))
        for key, value in (text or {}).items():
            if value:
                fh.write(_text_chunk(key, value))

    def add_rows(self, rgb: np.ndarray) -> None:
        rgb = np.asarray(rgb, np.uint8)
        if rgb.ndim != 3 or rgb.shape[1:] != (self.width, 3):
            raise ValueError(f"expected rows of shape (h, {self.width}, 3), got {rgb.shape}")
        if self.rows + rgb.shape[0] > self.height:
            raise ValueError(f"more than {self.height} rows")
        flat = rgb.reshape(rgb.shape[0], -1)
        lines = np.empty((flat.shape[0], flat.shape[1] + 1), np.uint8)
        lines[:, 0] = 1  # filter type Sub
        lines[:, 1:4] = flat[:, :3]
        np.subtract(flat[:, 3:], flat[:, :-3], out=lines[:, 4:])  # uint8 wraps mod 256, as PNG wants
        self._pending += self._z.compress(lines.tobytes())
        self.rows += rgb.shape[0]
        self._flush(False)

    def _flush(self, final: bool) -> None:
        while len(self._pending) >= _IDAT_BYTES or (final and self._pending):
            part = bytes(self._pending[:_IDAT_BYTES])
            del self._pending[:_IDAT_BYTES]
            self.fh.write(_chunk(b"IDAT", part))

    def close(self) -> None:
        if self.rows != self.height:
            raise ValueError(f"got {self.rows} of {self.height} rows")
        self._pending += self._z.flush()
        self._flush(True)
        self.fh.write(_chunk(b"IEND", b""))
