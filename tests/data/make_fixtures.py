"""Regenerate the tiny slide fixtures in this folder (checked in; a few KB each).

    python tests/data/make_fixtures.py

They let the slide-reader and ``histoviewer info`` tests run on a clone without the real
slides in ``../shared/data``:

- ``tiny.svs``: an Aperio-style SVS that OpenSlide opens with its ``aperio`` driver: level 0
  of 64 x 48 px in 16 x 16 deflate tiles, level 1 (32 x 24), a thumbnail and a label;
  ``MPP = 0.5``, ``AppMag = 20``. Its pixels are ``tiny_pixels()``: four flat quadrants.
- ``tiny-no-mpp.svs``: the same without ``MPP`` or ``AppMag`` (scale unknown).
- ``tiny-pyramid.tiff``: a generic tiled TIFF (OpenSlide's ``generic-tiff``), 3 levels.
- ``broken-tiles.svs``: ``tiny.svs`` with the level-0 tile at column 1, row 1 overwritten
  with garbage: it opens, and reading that tile fails.
- ``truncated.svs``: the first 200 bytes of ``tiny.svs``: it does not open.
- ``unsupported-compression.tiff``: a tiled TIFF whose Compression tag says 52479, a
  scheme nothing implements (as OpenSlide's own "unopenable" fixture): no reader opens it.

Deterministic: running it again rewrites the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
TILE = 16
SIZE = (64, 48)  # level-0 width, height
MPP = 0.5
QUADRANT_RGB = ((200, 60, 180), (230, 210, 225), (120, 40, 160), (250, 250, 250))  # TL, TR, BL, BR
BROKEN_TILE = (1, 1)  # column, row of the level-0 tile that broken-tiles.svs breaks


def tiny_pixels(width: int = SIZE[0], height: int = SIZE[1]) -> np.ndarray:
    """Level 0 of the fixtures: four flat quadrants (colours ``QUADRANT_RGB``)."""
    rgb = np.empty((height, width, 3), np.uint8)
    hw, hh = width // 2, height // 2
    rgb[:hh, :hw], rgb[:hh, hw:], rgb[hh:, :hw], rgb[hh:, hw:] = QUADRANT_RGB
    return rgb


def _half(rgb: np.ndarray) -> np.ndarray:
    return rgb[::2, ::2].copy()  # flat quadrants: subsampling is the exact downsample


def write_svs(path: Path, mpp: float | None = MPP, app_mag: int | None = 20) -> Path:
    level0 = tiny_pixels()
    h, w = level0.shape[:2]
    fields = "".join(f"|{key} = {value}" for key, value in (("AppMag", app_mag), ("MPP", mpp)) if value is not None)
    description = f"Aperio Image Library vFixture \r\n{w}x{h} ({TILE}x{TILE}) deflate{fields}"
    tiled = {"tile": (TILE, TILE), "compression": "zlib", "photometric": "rgb"}
    with tifffile.TiffWriter(path) as tif:
        tif.write(level0, description=description, metadata=None, **tiled)
        tif.write(_half(_half(level0)), description=f"Aperio Image Library vFixture \r\n{w}x{h} -> 16x12",
                  metadata=None, photometric="rgb", compression="zlib")  # thumbnail (stripped)
        tif.write(_half(level0), description=description, metadata=None, **tiled)
        tif.write(np.full((16, 16, 3), 90, np.uint8), description="Aperio Image Library vFixture \r\nlabel 16x16",
                  metadata=None, photometric="rgb", compression="zlib", subfiletype=1)
    return path


def write_generic_pyramid(path: Path) -> Path:
    level0 = tiny_pixels()
    with tifffile.TiffWriter(path) as tif:
        for i, level in enumerate((level0, _half(level0), _half(_half(level0)))):
            # levels below the first are flagged "reduced resolution" (NewSubfileType 1)
            tif.write(level, tile=(TILE, TILE), compression="zlib", photometric="rgb", metadata=None,
                      subfiletype=1 if i else 0)
    return path


def write_broken(source: Path, path: Path) -> Path:
    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tif:
        page = tif.pages[0]
        cols = -(-page.imagewidth // TILE)
        index = BROKEN_TILE[1] * cols + BROKEN_TILE[0]
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    data[offset:offset + count] = bytes((i * 37 + 11) % 256 for i in range(count))  # not a deflate stream
    path.write_bytes(bytes(data))
    return path


def write_unsupported_compression(path: Path, compression: int = 52479) -> Path:
    tifffile.imwrite(path, tiny_pixels(32, 32), tile=(TILE, TILE), photometric="rgb", metadata=None)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        assert tif.byteorder == "<"
        offset = tif.pages[0].tags["Compression"].valueoffset  # a SHORT held in the tag entry
    data[offset:offset + 2] = compression.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def main() -> None:
    svs = write_svs(HERE / "tiny.svs")
    write_svs(HERE / "tiny-no-mpp.svs", mpp=None, app_mag=None)
    write_generic_pyramid(HERE / "tiny-pyramid.tiff")
    write_broken(svs, HERE / "broken-tiles.svs")
    (HERE / "truncated.svs").write_bytes(svs.read_bytes()[:200])
    write_unsupported_compression(HERE / "unsupported-compression.tiff")
    for p in sorted(HERE.glob("*.svs")) + sorted(HERE.glob("*.tiff")):
        print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
