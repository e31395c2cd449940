"""Fast region reads for tiled TIFF pyramids (generic TIFF, Aperio SVS): decode the tiles
directly with tifffile/imagecodecs.

Why: for whole-slide analysis the decoding is half the work, and OpenSlide spends most of
its read time outside the JPEG decoder (painting ARGB through cairo, premultiplying,
converting to RGBA, then to RGB in Python): measured on a 2-core machine, 36 Mpx/s
through ``openslide.read_region`` against 176 Mpx/s decoding the same tiles here.

``TiffRegionSource.open`` returns None (use the slide reader) for anything it is not sure
about: not a TIFF, no level with a matching tiled 8-bit RGB page, planar data, or
compression imagecodecs cannot decode; single levels it cannot match (non-integer
downsample) are read through the slide reader. Reads are
pixel-identical to OpenSlide's for level-0 origins on the level's pixel grid (multiples of
the downsample, which is what ``RegionCutter`` asks for). Same contract as ``SlideReader.read_region``:
``(lv_height, lv_width, 3)`` uint8, white outside the image; reads may come from several
threads (``os.pread`` on one descriptor, no shared file position).

Decoded tiles can be kept in a bounded cache (``tile_cache_bytes``, least recently used first
out; analysis uses ``TILE_CACHE_BYTES``): neighbouring regions share the tiles along their edges, and a block of cells read for
analysis spans 3-4 tiles a side, so without it each level-2 tile of a slide was decoded ~2-5
times (issue 15: 0.85 s of decoding against 0.15 s for each tile once, on a 40,000 px phantom).
A pass that knows it will come back to some tiles long after the cache would have evicted them
can ``hold`` those: they stay decoded, outside the cache's bound, until ``release_held`` (the
screened full pass: the margin rounds revisit tiles of the first round, ``inference.screening``).
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from histoviewer.core.errors import SlideReadError
from histoviewer.core.slide.openslide_backend import THUMBNAIL_DIRECT_PIXELS
from histoviewer.core.slide.reader import SlideReader

log = logging.getLogger(__name__)

__all__ = ["TILE_CACHE_BYTES", "TiffRegionSource"]

_TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".svs"})

# Decoded tiles a whole-slide analysis keeps for reuse (``open``'s default is none: the viewer's
# readers keep their own caches): 128 MB holds 170 RGB tiles of 512 px, the tiles one row of
# analysis blocks shares with the next row on a CAMELYON-size slide (level 2: 49 tiles across;
# simulated on the 100,000 x 200,000 px phantom: 1,568 decodes, each tile once, against 2,716
# without a cache and 1,626 with 96 MB); bounded so no slide can grow it.
TILE_CACHE_BYTES = 128 * 1024 * 1024


class TiffRegionSource:
    """Region reads of a tiled TIFF pyramid by direct tile decoding (see the module docstring)."""

    def __init__(self, path: Path, reader: SlideReader, tiff, pages: list, tile_cache_bytes: int = 0) -> None:
        self.path = path
        self.reader = reader
        self.info = reader.info
        self._tiff = tiff
        self._pages = pages
        self._fd = os.open(path, os.O_RDONLY)
        self._lock = threading.Lock()
        # decoded tiles by (level, tile index), least recently used first; None: sparse tile
        self._cache: collections.OrderedDict[tuple[int, int], np.ndarray | None] = collections.OrderedDict()
        self._cache_lock = threading.Lock()
        self._cache_bytes = 0
        self._cache_limit = max(0, int(tile_cache_bytes))
        # tiles a pass asked to keep until it releases them (``hold``): keys to keep, and the
        # decoded ones kept so far (outside the cache's bound; the caller bounds the keys)
        self._hold_keys: frozenset[tuple[int, int]] = frozenset()
        self._held: dict[tuple[int, int], np.ndarray | None] = {}
        self.tiles_decoded = 0  # tiles decoded over this source's life (cache misses)

    @classmethod
    def open(cls, path: str | os.PathLike[str], reader: SlideReader,
             tile_cache_bytes: int = 0) -> TiffRegionSource | None:
        """A source for ``path`` (opened as ``reader``), or None when no level can be read
        directly. Levels that cannot are read through ``reader``. ``tile_cache_bytes``: the
        most decoded tiles kept for reuse (0: none)."""
        path = Path(path)
        info = reader.info
        if path.suffix.lower() not in _TIFF_SUFFIXES:
            return None
        try:
            tiff = tifffile.TiffFile(path)
        except Exception as exc:  # noqa: BLE001 - any doubt: fall back to the slide reader
            log.debug("%s: no direct tile reads: %s", path, exc)
            return None
        try:
            by_size = {}
            for page in tiff.pages:
                shape = getattr(page, "shape", ())
                if (len(shape) == 3 and shape[2] == 3 and page.is_tiled and page.dtype == np.uint8
                        and page.planarconfig == 1 and page.imagedepth == 1):
                    by_size.setdefault((shape[1], shape[0]), page)
            # Only integer downsamples: OpenSlide maps level-0 to level px of non-integer
            # ones (2.0005 on some scanners, 63.99 for odd sizes) with its own rounding;
            # those levels stay with the reader.
            pages = [by_size.get(tuple(dims)) if abs(ds - round(ds)) < 1e-9 else None
                     for dims, ds in zip(info.level_dimensions, info.level_downsamples)]
            if all(p is None for p in pages):
                tiff.close()
                return None
            source = cls(path, reader, tiff, pages, tile_cache_bytes)
            source._check_decodes()
        except Exception as exc:  # noqa: BLE001
            log.debug("%s: no direct tile reads: %s", path, exc)
            tiff.close()
            return None
        return source

    def direct_levels(self) -> list[int]:
        """Levels decoded here (the others go through the reader)."""
        return [i for i, p in enumerate(self._pages) if p is not None]

    def _check_decodes(self) -> None:
        page = [p for p in self._pages if p is not None][-1]
        for index, count in enumerate(page.databytecounts):
            if count:
                self._tile(page, index)
                return

    def _tile(self, page, index: int) -> np.ndarray | None:
        count = int(page.databytecounts[index])
        if count == 0:
            return None  # sparse tile: nothing scanned there
        fd = self._fd
        if fd < 0:
            raise SlideReadError(f"{self.path}: the slide was closed while it was being read")
        data = os.pread(fd, count, int(page.dataoffsets[index]))
        tile = page.decode(data, index, jpegtables=page.jpegtables)[0]
        return tile.reshape(page.tilelength, page.tilewidth, 3)

    def _cached_tile(self, level: int, page, index: int) -> np.ndarray | None:
        """``_tile``, decoded once while it stays in the cache (read-only: shared by reads).
        Two threads missing the same tile at once may both decode it (same pixels)."""
        key = (level, index)
        with self._cache_lock:
            if key in self._held:
                return self._held[key]
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        tile = self._tile(page, index)
        with self._cache_lock:
            self.tiles_decoded += 1
            if tile is not None:
                tile.flags.writeable = False
            if key in self._hold_keys:
                self._held[key] = tile
                return tile
            size = 0 if tile is None else tile.nbytes
            if self._cache_limit and size <= self._cache_limit and key not in self._cache:
                self._cache[key] = tile
                self._cache_bytes += size
                while self._cache_bytes > self._cache_limit:
                    _, old = self._cache.popitem(last=False)
                    self._cache_bytes -= 0 if old is None else old.nbytes
        return tile

    def read_region(self, l0_x: int, l0_y: int, level: int, lv_width: int, lv_height: int) -> np.ndarray:
        page = self._pages[level]
        if page is None:
            return self.reader.read_region(l0_x, l0_y, level, lv_width, lv_height)
        ds = self.info.level_downsamples[level]
        lv_x, lv_y = math.floor(l0_x / ds), math.floor(l0_y / ds)
        out = np.full((max(lv_height, 0), max(lv_width, 0), 3), 255, np.uint8)
        img_h, img_w = page.shape[:2]
        th, tw = page.tilelength, page.tilewidth
        across = math.ceil(img_w / tw)
        x0, y0 = max(lv_x, 0), max(lv_y, 0)
        x1, y1 = min(lv_x + lv_width, img_w), min(lv_y + lv_height, img_h)
        for ty, tx in _tile_span(x0, y0, x1, y1, tw, th):
            try:
                tile = self._cached_tile(level, page, ty * across + tx)
            except Exception as exc:  # any decode error: report which tile of which file
                raise SlideReadError(
                    f"{self.path}: cannot decode tile ({tx}, {ty}) of level {level}: {exc}"
                ) from exc
            if tile is None:
                continue
            # overlap of this tile with the wanted region, in level px
            ax0, ay0 = max(x0, tx * tw), max(y0, ty * th)
            ax1, ay1 = min(x1, (tx + 1) * tw), min(y1, (ty + 1) * th)
            out[ay0 - lv_y : ay1 - lv_y, ax0 - lv_x : ax1 - lv_x] = \
                tile[ay0 - ty * th : ay1 - ty * th, ax0 - tx * tw : ax1 - tx * tw]
        return out

    def thumbnail(self, max_size: int) -> np.ndarray | None:
        """The slide reader's ``thumbnail(max_size)``, pixel for pixel, from directly decoded
        tiles (10x cheaper), or None when that cannot be promised: not an OpenSlide-read
        slide, a background colour other than white, or a thumbnail level this source does
        not decode or that OpenSlide's reader would shrink block by block.

        OpenSlide's thumbnail (openslide-python ``get_thumbnail``, which the reader calls
        for levels up to ``THUMBNAIL_DIRECT_PIXELS``): the level OpenSlide's
        ``get_best_level_for_downsample`` picks, read whole, composited on the background
        colour, then Pillow's ``thumbnail`` with Lanczos; the same steps here."""
        info = self.info
        if info.backend != "openslide" or info.properties.get(
                "openslide.background-color", "ffffff").lower() != "ffffff":
            return None
        downsample = max(d / max_size for d in info.level_dimensions[0])
        level = 0  # openslide_get_best_level_for_downsample's rule
        for i, ds in enumerate(info.level_downsamples):
            if downsample >= ds:
                level = i
            else:
                break
        lv_w, lv_h = info.level_dimensions[level]
        if self._pages[level] is None or lv_w * lv_h > THUMBNAIL_DIRECT_PIXELS:
            return None
        image = Image.fromarray(self.read_region(0, 0, level, lv_w, lv_h))
        image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
        return np.asarray(image)

    def tiles_in(self, level: int, lv_x0: float, lv_y0: float, lv_x1: float, lv_y1: float) -> list[int]:
        """Tile indices of ``level`` that a read of the level-px rectangle [x0, x1) x [y0, y1)
        decodes (those inside the image), as ``read_region`` walks them; [] for a level read
        through the slide reader."""
        page = self._pages[level]
        if page is None:
            return []
        img_h, img_w = page.shape[:2]
        x0, y0 = max(math.floor(lv_x0), 0), max(math.floor(lv_y0), 0)
        x1, y1 = min(math.ceil(lv_x1), img_w), min(math.ceil(lv_y1), img_h)
        across = math.ceil(img_w / page.tilewidth)
        return [ty * across + tx for ty, tx in _tile_span(x0, y0, x1, y1, page.tilewidth, page.tilelength)]

    def tile_grid(self, level: int) -> tuple[int, int, int, int] | None:
        """``(tile_w, tile_h, image_w, image_h)`` of ``level`` in level px (tile ``(tx, ty)``
        has index ``ty * ceil(image_w / tile_w) + tx``), or None for a level read through
        the slide reader."""
        page = self._pages[level]
        if page is None:
            return None
        return int(page.tilewidth), int(page.tilelength), int(page.shape[1]), int(page.shape[0])

    def hold(self, level: int, indices) -> None:
        """Keep these tiles of ``level`` decoded once read, outside the cache's bound, until
        ``release_held`` (replacing any earlier hold). The caller bounds how many: at most
        ``len(indices)`` tiles of ``tile_w * tile_h * 3`` bytes (``tile_grid``) are held."""
        with self._cache_lock:
            self._hold_keys = frozenset((level, int(i)) for i in indices)
            self._held = {k: v for k, v in self._held.items() if k in self._hold_keys}

    def release_held(self) -> None:
        """Drop the held tiles and the hold (memory back)."""
        with self._cache_lock:
            self._hold_keys = frozenset()
            self._held = {}

    @property
    def held_bytes(self) -> int:
        """Bytes of decoded tiles held now (``hold``)."""
        with self._cache_lock:
            return sum(0 if t is None else t.nbytes for t in self._held.values())

    def clear_cache(self) -> None:
        """Drop the decoded tiles kept for reuse and any held ones (memory back; later reads
        decode again)."""
        with self._cache_lock:
            self._cache.clear()
            self._cache_bytes = 0
            self._hold_keys = frozenset()
            self._held = {}

    def close(self) -> None:
        with self._lock:
            self.clear_cache()
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._tiff.close()


def _tile_span(x0: int, y0: int, x1: int, y1: int, tile_w: int, tile_h: int) -> list[tuple[int, int]]:
    """(tile row, tile column) of every tile meeting the level-px rectangle [x0, x1) x [y0, y1)
    (already clipped to the image), row by row."""
    return [(ty, tx) for ty in range(y0 // tile_h, (y1 - 1) // tile_h + 1 if y1 > y0 else 0)
            for tx in range(x0 // tile_w, (x1 - 1) // tile_w + 1 if x1 > x0 else 0)]
