"""Stream a tiled, JPEG-compressed, pyramidal TIFF that other tools read as what it is.

The one slide writer: the phantom generator and the overlay/heatmap exports both write
their pyramids with it (it imports nothing of ours, so neither has to import the other).

Level 0 arrives as rows of already-encoded tiles plus each row downsampled 2x. Lower
levels are built on the fly from those half-size rows: each level keeps one strip of
``tile_size`` rows (memory grows with the slide's width, never its area) and encodes full
strips into a spill file. When every level is encoded, the tiles are copied into the TIFF
as they are (no pixel is decoded and re-encoded); knowing the exact size then lets the file
be a classic TIFF whenever it fits under 4 GiB (BigTIFF only beyond, which fewer tools read).

Layout: a pyramidal OME-TIFF whose reduced levels are also in the main IFD chain, so that
each of the readers people use finds the pyramid its own way (checked against each, see
``tests/core/test_pyramid_interop.py``):

- OpenSlide 4 (generic-TIFF driver) and libvips walk the main IFD chain: level 0 is the first
  IFD (NewSubfileType 0), each reduced level follows with NewSubfileType 1.
- Bio-Formats (QuPath's reader for such files) reads pyramids from a non-vendor TIFF only as
  OME-TIFF sub-resolutions: its plain TIFF reader keeps every reduced IFD as a thumbnail
  (measured with bioformats_package 7.3.1: one resolution). So level 0's ImageDescription is
  OME-XML (one image, its pixel size, the caller's text in ``Description``) and level 0 has a
  SubIFDs tag pointing at the same reduced IFDs (the tiles are stored once). Bio-Formats
  then lists one series with every level as a resolution.
- tifffile reads the OME series with its levels; it also lists the main-chain pages.

Every IFD carries resolution tags in pixels per centimetre for its own pixel size (where
OpenSlide's ``openslide.mpp-x``, tifffile and libvips take the scale from), and the OME-XML
states level 0's (Bio-Formats' ``PhysicalSizeX``). Nothing pretends to be a vendor format;
``description_text`` gives back the caller's text.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as defused_et
import imagecodecs
import numpy as np
import tifffile

from histoviewer.core.atomic import partial_prefix

__all__ = [
    "EncodedRow", "description_text", "downsample2", "encode_jpeg", "fits_classic_tiff", "pyramid_dimensions",
    "write_pyramidal_tiff",
]

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


# Classic TIFF offsets are 32-bit. Beyond the tile bytes, each IFD holds its tags, a tile
# offset and byte count per tile (4 + 4 bytes classic) and the description; this margin
# covers the tags and the header many times over.
CLASSIC_TIFF_LIMIT_BYTES = 2**32 - 1
_IFD_MARGIN_BYTES = 1 << 20


def fits_classic_tiff(tile_bytes: int, n_tiles: int, description_bytes: int) -> bool:
    """Whether a file of ``tile_bytes`` of tile data in ``n_tiles`` tiles (all levels) and
    a description of ``description_bytes`` fits a classic (32-bit offset) TIFF."""
    return tile_bytes + 8 * n_tiles + description_bytes + _IFD_MARGIN_BYTES <= CLASSIC_TIFF_LIMIT_BYTES


OME_NAMESPACE = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
SUBIFDS_TAG = 330
# tifffile writes SubIFDs only for IFDs it writes itself as sub-files, not for IFDs of the main
# chain: level 0 gets this unassigned code as a placeholder of the right size and position
# (tags are sorted by code and none lies between 330 and it), renamed and filled in afterwards
_SUBIFDS_PLACEHOLDER_TAG = 331


def _ome_xml(width: int, height: int, mpp: float, description: str, software: str) -> str:
    """OME-XML for level 0 (ASCII: the default unit, um, is not written out)."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>'
        f'<OME xmlns="{OME_NAMESPACE}" Creator={quoteattr(software)}>'
        f'<Image ID="Image:0" Name="level 0"><Description>{escape(description)}</Description>'
        f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{width}" SizeY="{height}" '
        f'SizeC="3" SizeZ="1" SizeT="1" PhysicalSizeX="{mpp:.12g}" PhysicalSizeY="{mpp:.12g}" '
        f'Interleaved="true"><Channel ID="Channel:0:0" SamplesPerPixel="3"/>'
        f'<TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>'
    )


def description_text(image_description: str) -> str:
    """The caller's text from level 0's ImageDescription (the OME-XML's ``Description``);
    a description that is not ours' OME-XML comes back as it is."""
    if not image_description.startswith("<?xml"):
        return image_description
    element = defused_et.fromstring(image_description).find(f"{{{OME_NAMESPACE}}}Image/{{{OME_NAMESPACE}}}Description")
    return "" if element is None or element.text is None else element.text


def _link_sub_ifds(path: Path, bigtiff: bool) -> None:
    """Turn level 0's placeholder into a SubIFDs tag holding the offsets of the reduced levels'
    IFDs (the main chain's pages 1..n), in place."""
    with tifffile.TiffFile(path) as tif:
        offsets = [page.offset for page in tif.pages[1:]]
        tag = tif.pages[0].tags[_SUBIFDS_PLACEHOLDER_TAG]
        code_at, value_at = tag.offset, tag.valueoffset
    with open(path, "r+b") as f:
        f.seek(code_at)
        if struct.unpack("<H", f.read(2))[0] != _SUBIFDS_PLACEHOLDER_TAG:
            raise RuntimeError(f"{path}: level 0's SubIFDs placeholder is not where tifffile said")
        f.seek(code_at)
        f.write(struct.pack("<H", SUBIFDS_TAG))
        f.seek(value_at)
        f.write(struct.pack(f"<{len(offsets)}{'Q' if bigtiff else 'I'}", *offsets))


def _spilled_tiles(spill: BinaryIO, spans: list[tuple[int, int]]) -> Iterator[bytes]:
    spill.flush()
    for offset, length in spans:
        spill.seek(offset)
        yield spill.read(length)


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
    description: str = "",
    software: str = "HistoViewer",
    on_row: Callable[[int], None] | None = None,
) -> tuple[tuple[int, int], ...]:
    """Write level 0 from ``rows`` (top to bottom) and all lower levels to ``path``.

    ``rows`` must yield exactly ``ceil(height / tile_size)`` rows of
    ``ceil(width / tile_size)`` tiles each. ``on_row(i)`` is called after row ``i``.
    ``mpp``: micrometres per level-0 pixel (each level's resolution tags state its own).
    ``description`` (level 0's ImageDescription, ASCII) says what the image is, in the
    caller's words (empty: none); ``software`` goes in level 0's Software tag.
    Returns the dimensions of every level. Spill files (as large as the TIFF, together)
    live in a temporary folder beside ``path`` and are removed however the write ends.
    """
    path = Path(path)
    if not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"{path}: a pyramidal TIFF needs a positive, finite mpp, got {mpp!r}")
    dims = pyramid_dimensions(width, height)
    n_cols = math.ceil(width / tile_size)
    n_rows = math.ceil(height / tile_size)
    pad = np.asarray(pad_rgb, np.uint8)
    if not description.isascii():  # TIFF ASCII: say so before any pixel is rendered
        raise ValueError(f"{path}: the TIFF description must be ASCII text")
    description_bytes = description.encode("ascii")
    # named by this process (core.atomic): a writer killed mid-way leaves a folder the next write cleans
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=partial_prefix(path)) as tmp:
        spills = [open(Path(tmp) / f"level{k}.jpegs", "w+b") for k in range(len(dims))]
        try:
            sinks: list[_LevelSink] = []
            nxt: _LevelSink | None = None
            for k in range(len(dims) - 1, 0, -1):
                nxt = _LevelSink(dims[k], tile_size, jpeg_quality, pad, spills[k], nxt)
                sinks.insert(0, nxt)

            level0_spans: list[tuple[int, int]] = []
            seen = 0
            for i, row in enumerate(rows):
                if len(row.tiles) != n_cols or i >= n_rows:
                    raise ValueError(
                        f"row {i} has {len(row.tiles)} tiles; expected {n_rows} rows of {n_cols}"
                    )
                for data in row.tiles:
                    level0_spans.append((spills[0].tell(), len(data)))
                    spills[0].write(data)
                if sinks:
                    sinks[0].push(row.half)
                    if i == n_rows - 1:
                        sinks[0].finish()
                seen = i + 1
                if on_row is not None:
                    on_row(i)
            if seen != n_rows:
                raise ValueError(f"got {seen} tile rows, expected {n_rows}")

            spans = [level0_spans] + [sink.spans for sink in sinks]
            tile_bytes = sum(length for level in spans for _off, length in level)
            n_tiles = sum(len(level) for level in spans)
            ome = _ome_xml(width, height, mpp, description, software).encode("ascii")
            bigtiff = not fits_classic_tiff(tile_bytes, n_tiles, len(description_bytes) + len(ome))
            common = dict(
                dtype=np.uint8, tile=(tile_size, tile_size), compression="jpeg",
                photometric="rgb", subsampling=(2, 2), resolutionunit="CENTIMETER",
                metadata=None,
            )
            n_reduced = len(dims) - 1
            with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
                for k, (w, h) in enumerate(dims):
                    # this level's own pixel size (um) on each axis, as pixels per cm
                    px_per_cm = (1e4 * w / (mpp * width), 1e4 * h / (mpp * height))
                    sub_ifds = [(_SUBIFDS_PLACEHOLDER_TAG, 16 if bigtiff else 4, n_reduced, [0] * n_reduced, True)]
                    tw.write(
                        _spilled_tiles(spills[k], spans[k]),
                        shape=(h, w, 3),
                        resolution=px_per_cm,
                        description=ome if k == 0 else None,
                        subfiletype=0 if k == 0 else 1,  # 1: reduced-resolution image
                        software=software if k == 0 else False,
                        extratags=sub_ifds if k == 0 and n_reduced else (),
                        **common,
                    )
            if n_reduced:
                _link_sub_ifds(path, bigtiff)
        finally:
            for f in spills:
                f.close()
    return dims
