"""The probability map itself, losslessly: float32 TIFF with its geometry.

Same encoding as ``analyze``'s ``probability.tiff`` (0..1 probability, NaN not computed,
-1 background, -2 failed), cropped to the map cells that intersect the requested region.
The ImageDescription (JSON) holds the full-slide grid geometry and the crop: pixel
``(r, c)`` is map cell ``(row0 + r, col0 + c)`` and covers level-0 px
``origin + (col0 + c, row0 + r) * l0_stride`` to ``+ l0_stride``.

Other tools need no JSON to scale it: the image is tiled (``RAW_TILE_PX``; QuPath, libvips
and OpenSlide read tiles, not one strip of the whole map) and its resolution tags give the
map's own pixel size, one cell (``l0_stride * slide_mpp`` um), in pixels per centimetre.
The description's ``pixel_size_um`` and ``values`` say the same in words.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from histoviewer.core.errors import ExportError, InferenceError
from histoviewer.core.atomic import atomic_target
from histoviewer.core.export.provenance import CellCrop
from histoviewer.core.export.source import HeatmapData
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.outputs import ENCODING, MAP_TILE_PX, map_tiff_options
from histoviewer.core.safe_input import parse_json, require_regular_file

__all__ = [
    "RAW_TILE_PX", "RawProbabilities", "cell_window", "read_raw_probabilities", "write_raw_probabilities",
]

RAW_TILE_PX = MAP_TILE_PX  # map cells per tile side, as analyze's maps (a multiple of 16, as TIFF tiles must be)


def cell_window(geometry: GridGeometry, l0_region: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """``(row0, col0, rows, cols)`` of the map cells that intersect a level-0 rectangle."""
    s = geometry.l0_stride
    x, y, w, h = l0_region
    c0 = max(0, math.floor((x - geometry.l0_origin_x) / s))
    r0 = max(0, math.floor((y - geometry.l0_origin_y) / s))
    c1 = min(geometry.cols, math.ceil((x + w - geometry.l0_origin_x) / s))
    r1 = min(geometry.rows, math.ceil((y + h - geometry.l0_origin_y) / s))
    if c1 <= c0 or r1 <= r0:
        raise ExportError(f"region {l0_region} holds no cell of the probability map")
    return r0, c0, r1 - r0, c1 - c0


@dataclass(frozen=True, eq=False)
class RawProbabilities:
    """A read-back raw export: the encoded values and where they sit on the slide."""

    encoded: np.ndarray
    geometry: GridGeometry
    row0: int
    col0: int
    meta: dict

    def l0_rect(self) -> tuple[float, float, float, float]:
        g = self.geometry
        rows, cols = self.encoded.shape
        return (g.l0_origin_x + self.col0 * g.l0_stride, g.l0_origin_y + self.row0 * g.l0_stride,
                cols * g.l0_stride, rows * g.l0_stride)


def write_raw_probabilities(path: str | os.PathLike[str], heatmap: HeatmapData,
                            l0_region: tuple[float, float, float, float], provenance: dict) -> CellCrop:
    """Write the cropped map to ``path`` (tiled zlib float32 TIFF with resolution tags, its
    description as JSON); returns the crop: which map cells it holds."""
    g = heatmap.geometry
    r0, c0, rows, cols = cell_window(g, l0_region)
    cell_um = g.l0_stride * g.slide_mpp  # one output pixel is one map cell
    crop = CellCrop(r0, c0, rows, cols)
    data = np.ascontiguousarray(heatmap.encoded[r0 : r0 + rows, c0 : c0 + cols], np.float32)
    meta = {"geometry": g.to_dict(), "encoding": ENCODING,
            "pixel_size_um": cell_um,
            "values": "tumour probability 0..1 per map cell; NaN not computed, -1 background (glass), "
                      "-2 failed (see encoding)",
            "crop": crop.to_dict(),
            "frame": ("pixel (r, c) is map cell (row0 + r, col0 + c); it covers level-0 px x in "
                      "[origin_x + (col0 + c) * l0_stride, + l0_stride), y likewise with rows"),
            "provenance": provenance}
    with atomic_target(path) as tmp:
        tifffile.imwrite(tmp, data, **map_tiff_options(g, meta))
    return crop


def read_raw_probabilities(path: str | os.PathLike[str]) -> RawProbabilities:
    """Read a raw export back (``ExportError`` for a file that is not one)."""
    path = Path(path)
    require_regular_file(path, "raw probability export", ExportError)  # a FIFO would block
    try:
        with tifffile.TiffFile(path) as tif:
            meta = parse_json(tif.pages[0].description, path, "the export's description", ExportError)
            data = tif.asarray()
        geometry = GridGeometry.from_dict(meta["geometry"])
        crop = meta["crop"]
        return RawProbabilities(np.asarray(data, np.float32), geometry, int(crop["row0"]),
                                int(crop["col0"]), meta)
    except (OSError, ValueError, KeyError, TypeError, tifffile.TiffFileError, InferenceError) as exc:
        raise ExportError(f"{path}: not a HistoViewer raw probability export: {exc}") from exc
