"""Stream a tiled, JPEG-compressed, pyramidal TIFF that OpenSlide opens.

The one slide writer: the phantom generator and the overlay/heatmap exports both write
their pyramids with it (it imports nothing of ours, so neither has to import the other).

Level 0 arrives as rows of already-encoded tiles plus each row downsampled 2x. Lower
levels are built on the fly from those half-size rows: each level keeps one strip of
``tile_size`` rows (memory grows with the slide's width, never its area), encodes full
strips into a temporary file and passes the strip, halved again, to the next level. After
level 0 has been written, each lower level is copied into the TIFF from its temporary file,
so no pixel is decoded and re-encoded.

The file is a BigTIFF with one tiled page per level (the layout OpenSlide's generic-TIFF
and Aperio readers expect), resolution tags in pixels per centimetre, and an Aperio-style
ImageDescription that gives OpenSlide the microns-per-pixel and objective power.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import imagecodecs
import numpy as np
import tifffile

from histoviewer.core.atomic import partial_prefix

__all__ = ["EncodedRow", "downsample2", "encode_jpeg", "pyramid_dimensions", "write_pyramidal_tiff"]

SMALLEST_LEVEL_PX = 1024


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG for a TIFF tile: YCbCr with 2x2 chroma subsampling, as tifffile declares it."""
    return imagecodecs.jpeg_encode(
        rgb, level=quality, colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2)
    )


@dataclass(frozen=True, eq=False)
class EncodedRow:
    """One row of level-0 tiles: JPEG bytes left to right, and the row's pixels
    downsampled 2x (uint8, ``tile_size // 2`` x ``n_cols * tile_size // 2`` x 3)."""

    tiles: tuple[bytes, ...]
    half: np.ndarray


def downsample2(rgb: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Average 2x2 blocks of an even-sized uint8 ``(H, W, 3)`` image (rounded).

    Works through ``chunk`` columns at a time so that a 100,000 px wide strip needs a few
    MB of scratch, not a uint16 copy of itself.
    """
    h, w = rgb.shape[0] // 2, rgb.shape[1] // 2
    out = np.empty((h, w) + rgb.shape[2:], np.uint8)
    for c0 in range(0, 2 * w, chunk):
        a = rgb[:, c0 : c0 + chunk].astype(np.uint16)
        s = a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]
        out[:, c0 // 2 : c0 // 2 + s.shape[1]] = (s + 2) >> 2
    return out


def pyramid_dimensions(width: int, height: int) -> tuple[tuple[int, int], ...]:
    """``(width, height)`` of every level: halved (rounding up) until the longer side is
    at most ``SMALLEST_LEVEL_PX``."""
    dims = [(int(width), int(height))]
    while max(dims[-1]) > SMALLEST_LEVEL_PX:
        w, h = dims[-1]
        dims.append(((w + 1) // 2, (h + 1) // 2))
    return tuple(dims)


class _LevelSink:
    """Collects one pyramid level strip by strip, encodes its tiles to a spill file."""

    def __init__(
        self, dims: tuple[int, int], tile_size: int, quality: int, pad_rgb: np.ndarray,
        spill: BinaryIO, next_sink: _LevelSink | None,
    ) -> None:
        self.width, self.height = dims
        self.ts = tile_size
        self.quality = quality
        self.pad_rgb = pad_rgb
        self.n_cols = math.ceil(self.width / tile_size)
        self.n_rows = math.ceil(self.height / tile_size)
        self.buf = np.empty((tile_size, self.n_cols * tile_size, 3), np.uint8)
        self.buf[:] = pad_rgb
        self.filled = 0
        self.strips_done = 0
        self.spill = spill
        self.spans: list[tuple[int, int]] = []
        self.next = next_sink

    def push(self, rows: np.ndarray) -> None:
        i, n = 0, rows.shape[0]
        w = min(rows.shape[1], self.width)
        while i < n and self.strips_done < self.n_rows:
            take = min(self.ts - self.filled, n - i)
            self.buf[self.filled : self.filled + take, :w] = rows[i : i + take, :w]
            self.filled += take
            i += take
            if self.filled == self.ts:
                self._emit()

    def _emit(self) -> None:
        ts = self.ts
        valid_rows = min(ts, self.height - self.strips_done * ts)
        # Pixels outside the level (right and bottom margins of edge tiles) are glass, so
        # that averaging into the next level does not drag in stale data.
        self.buf[valid_rows:] = self.pad_rgb
        self.buf[:, self.width :] = self.pad_rgb
        for c in range(self.n_cols):
            data = encode_jpeg(np.ascontiguousarray(self.buf[:, c * ts : (c + 1) * ts]), self.quality)
            self.spans.append((self.spill.tell(), len(data)))
            self.spill.write(data)
        if self.next is not None:
            self.next.push(downsample2(self.buf))
        self.strips_done += 1
        self.filled = 0

    def finish(self) -> None:
        if self.filled > 0 and self.strips_done < self.n_rows:
            self.buf[self.filled :] = self.pad_rgb
            self.filled = self.ts
            self._emit()
        if self.strips_done != self.n_rows:
            raise RuntimeError(
                f"pyramid level {self.width}x{self.height} got {self.strips_done} of "
                f"{self.n_rows} tile rows"
            )
        if self.next is not None:
            self.next.finish()

    def tiles(self) -> Iterator[bytes]:
        self.spill.flush()
        for offset, length in self.spans:
            self.spill.seek(offset)
            yield self.spill.read(length)


def _aperio_description(
    l0_dims: tuple[int, int], dims: tuple[int, int], tile_size: int, quality: int, mpp: float,
    extra: str,
) -> str:
    """Aperio SVS-style description: OpenSlide's Aperio reader takes ``MPP`` and ``AppMag``
    from it (a generic TIFF would give the mpp but no objective power)."""
    w0, h0 = l0_dims
    mag = 10.0 / mpp  # 0.25 um/px is a 40x scan, 0.5 um/px a 20x scan
    if dims == l0_dims:
        head = f"{w0}x{h0} [0,0 {w0}x{h0}] ({tile_size}x{tile_size}) JPEG/RGB Q={quality}"
    else:
        head = f"{w0}x{h0} -> {dims[0]}x{dims[1]} - ({tile_size}x{tile_size}) JPEG/RGB Q={quality}"
    fields = f"|AppMag = {mag:g}|MPP = {mpp:.6g}"
    return f"Aperio Image Library v12.0.15 \n{head}{fields}{extra}"


def write_pyramidal_tiff(
    path: str | os.PathLike[str],
    rows: Iterable[EncodedRow],
    *,
    width: int,
    height: int,
    tile_size: int,
    jpeg_quality: int,
    mpp: float,
    pad_rgb: tuple[int, int, int],
    description_extra: str = "",
    software: str = "HistoViewer",
    on_row: Callable[[int], None] | None = None,
) -> tuple[tuple[int, int], ...]:
    """Write level 0 from ``rows`` (top to bottom) and all lower levels to ``path``.

    ``rows`` must yield exactly ``ceil(height / tile_size)`` rows of
    ``ceil(width / tile_size)`` tiles each. ``on_row(i)`` is called after row ``i``.
    ``software`` goes in level 0's Software tag.
    Returns the dimensions of every level. Spill files live in a temporary folder beside
    ``path`` and are removed however the write ends.
    """
    path = Path(path)
    dims = pyramid_dimensions(width, height)
    n_cols = math.ceil(width / tile_size)
    n_rows = math.ceil(height / tile_size)
    pad = np.asarray(pad_rgb, np.uint8)
    # named by this process (core.atomic): a writer killed mid-way leaves a folder the next write cleans
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=partial_prefix(path)) as tmp:
        spills = [open(Path(tmp) / f"level{k}.jpegs", "w+b") for k in range(1, len(dims))]
        try:
            sinks: list[_LevelSink] = []
            nxt: _LevelSink | None = None
            for k in range(len(dims) - 1, 0, -1):
                nxt = _LevelSink(dims[k], tile_size, jpeg_quality, pad, spills[k - 1], nxt)
                sinks.insert(0, nxt)

            seen = [0]

            def level0() -> Iterator[bytes]:
                # tifffile stops pulling after the last tile, so everything that must
                # happen per row (lower levels, progress) happens before its tiles go out.
                for i, row in enumerate(rows):
                    if len(row.tiles) != n_cols or i >= n_rows:
                        raise ValueError(
                            f"row {i} has {len(row.tiles)} tiles; expected {n_rows} rows of "
                            f"{n_cols}"
                        )
                    if sinks:
                        sinks[0].push(row.half)
                        if i == n_rows - 1:
                            sinks[0].finish()
                    seen[0] = i + 1
                    if on_row is not None:
                        on_row(i)
                    yield from row.tiles

            common = dict(
                dtype=np.uint8, tile=(tile_size, tile_size), compression="jpeg",
                photometric="rgb", subsampling=(2, 2), resolutionunit="CENTIMETER",
                metadata=None,
            )
            with tifffile.TiffWriter(path, bigtiff=True) as tw:
                for k, (w, h) in enumerate(dims):
                    px_per_cm = 1e4 / (mpp * (width / w))
                    tw.write(
                        level0() if k == 0 else sinks[k - 1].tiles(),
                        shape=(h, w, 3),
                        resolution=(px_per_cm, px_per_cm),
                        description=_aperio_description(
                            dims[0], (w, h), tile_size, jpeg_quality, mpp, description_extra
                        ),
                        subfiletype=0 if k == 0 else 1,
                        software=software if k == 0 else False,
                        **common,
                    )
                    if k == 0 and seen[0] != n_rows:
                        raise ValueError(f"got {seen[0]} tile rows, expected {n_rows}")
        finally:
            for f in spills:
                f.close()
    return dims
