"""What ``analyze`` writes per slide: the probability map (lossless float32 TIFF + JSON
sidecar) and a heatmap PNG over a slide thumbnail; ``analyze_into`` makes a slide's whole
folder appear only when complete.

Probability map encoding (``probability.tiff``, float32, zlib): one pixel per map cell
(see ``grid.py``: one stride square each, row-major from the level-0 origin); values in
0..1 are tumour probabilities, NaN = not computed, -1 = background (no tissue, never
classified), -2 = failed. The TIFF's ImageDescription and ``probability.json`` hold the
geometry, so pixel ``(row, col)`` covers level-0 px ``origin + (col, row) * l0_stride``
to ``+ l0_stride``. Read the metadata back with ``analysis.map_io`` (``read_map_meta``), the
one reader (below this layer, so the analysis can use it too).
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from histoviewer.core.analysis.summary import SlideSummary
from histoviewer.core.atomic import atomic_folder, atomic_write_bytes, atomic_write_text
from histoviewer.core.colormaps import DEFAULT_COLORMAP, colormap_lut, lut_indices
from histoviewer.core.errors import HistoViewerError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import ENCODED, CellState
from histoviewer.core.inference.heatmap_key import TISSUE_RGB, draw_heatmap_key
from histoviewer.core.inference.overlay import SCREENED_RGBA
from histoviewer.core.inference.png_bytes import rgb_png_bytes
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.strict_json import strict_dumps

__all__ = [
    "DOMAIN_ENCODING",
    "ENCODING",
    "MAP_TILE_PX",
    "analyze_into",
    "heatmap_base",
    "in_background",
    "map_tiff_bytes",
    "map_tiff_options",
    "write_domain_map",
    "write_heatmap_png",
    "write_probability_map",
    "write_relocated_summary",
]

ENCODING = {
    "probability": "0..1",
    "not_computed": "NaN",
    "background": ENCODED[CellState.BACKGROUND],
    "failed": ENCODED[CellState.FAILED],
    "screened_negative": ENCODED[CellState.SCREENED_NEGATIVE],  # tissue the full model skipped
}

DOMAIN_ENCODING = {
    "distance": ">= 0 (Mahalanobis distance to the model's training tissue; see models.domain)",
    "not_computed": "NaN (not classified, or the model has no domain profile)",
    "background": ENCODED[CellState.BACKGROUND],
    "failed": ENCODED[CellState.FAILED],
}

_GLASS_GREY = 0.35  # how much of the thumbnail's colour remains where there is no result


# Maps are tiled like the raw export (other tools read tiles, not one strip of the whole map).
MAP_TILE_PX = 256


def map_tiff_options(geometry: GridGeometry, meta: dict[str, Any]) -> dict[str, Any]:
    """``tifffile.imwrite`` options of every map TIFF we write (analyze's maps, the raw
    export): zlib, tiled, resolution tags giving its physical scale (one pixel is one map
    cell: ``l0_stride`` level-0 px of ``slide_mpp`` um), so QuPath, OpenSlide-based tools and
    tifffile size it right; ``meta`` (JSON) is its description."""
    px_per_cm = 1e4 / (geometry.l0_stride * geometry.slide_mpp)
    return {"compression": "zlib", "tile": (MAP_TILE_PX, MAP_TILE_PX), "resolution": (px_per_cm, px_per_cm),
            "resolutionunit": "CENTIMETER", "description": strict_dumps(meta), "metadata": None}


def map_tiff_bytes(encoded: np.ndarray, geometry: GridGeometry, meta: dict[str, Any]) -> bytes:
    """A map (float32) as TIFF bytes (``map_tiff_options``)."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ascontiguousarray(encoded, np.float32), **map_tiff_options(geometry, meta))
    return buf.getvalue()


def write_probability_map(folder: Path, encoded: np.ndarray, geometry: GridGeometry, *,
                          slide: str | None = None, model: ModelRecord | None = None) -> tuple[Path, Path]:
    """Write ``probability.tiff`` and ``probability.json``; returns both paths. ``slide``
    and ``model`` (what made the map) are recorded when given (``analyze`` gives both)."""
    meta: dict[str, Any] = {"geometry": geometry.to_dict(), "encoding": ENCODING, "frame": (
        "pixel (row, col) covers level-0 px x in [origin_x + col*l0_stride, +l0_stride), "
        "y likewise with row")}
    if slide is not None:
        meta["slide"] = slide
    if model is not None:
        meta["model"] = model.to_dict()
    tiff_path, json_path = folder / "probability.tiff", folder / "probability.json"
    atomic_write_bytes(tiff_path, map_tiff_bytes(encoded, geometry, meta))
    atomic_write_text(json_path, strict_dumps(meta, indent=2))
    return tiff_path, json_path


def write_domain_map(folder: Path, encoded: np.ndarray, geometry: GridGeometry, *,
                     patch_threshold: float, slide: str | None = None) -> Path:
    """Write ``domain.tiff``: the per-cell domain distance (float32, zlib; ``DOMAIN_ENCODING``)
    in the probability map's frame; its description (JSON) holds the geometry and the
    model's per-patch threshold (a cell above it is unlike the training tissue). Read it with
    ``analysis.map_io.read_domain_map``."""
    meta: dict[str, Any] = {"geometry": geometry.to_dict(), "encoding": DOMAIN_ENCODING,
                            "patch_threshold": float(patch_threshold)}
    if slide is not None:
        meta["slide"] = slide
    path = folder / "domain.tiff"
    atomic_write_bytes(path, map_tiff_bytes(encoded, geometry, meta))
    return path


def heatmap_base(thumbnail: np.ndarray) -> np.ndarray:
    """The greyed slide thumbnail the heatmap is painted on (uint8 RGB; integer maths: this
    runs on millions of pixels). Separate so it can be made while the slide is classified."""
    base = thumbnail[..., :3]
    grey = base[..., 0].astype(np.uint16)  # channel by channel: numpy's sum over a last axis
    grey += base[..., 1]  # of 3 is several times slower
    grey += base[..., 2]
    grey //= 3
    keep = round(_GLASS_GREY * 256)
    out = base.astype(np.uint16) * keep
    out += (grey * (256 - keep))[..., None]
    out >>= 8
    return out.astype(np.uint8)


def write_heatmap_png(path: Path, thumbnail: np.ndarray, encoded: np.ndarray, geometry: GridGeometry,
                      opacity: float = 0.65, *, base: np.ndarray | None = None) -> Path:
    """The map in viridis over a greyed slide thumbnail: grey where nothing was classified,
    the viewer's pale blue veil (``overlay.SCREENED_RGBA``) over screened-negative tissue,
    which the full model did not classify either but the screen looked at, and a key to
    these colours (``heatmap_key``). ``base``: ``heatmap_base(thumbnail)`` when already made."""
    th, tw = thumbnail.shape[:2]
    # map cell under each thumbnail pixel centre (non-decreasing along each axis)
    l0_x = (np.arange(tw) + 0.5) * geometry.l0_width / tw
    l0_y = (np.arange(th) + 0.5) * geometry.l0_height / th
    cols = np.clip(((l0_x - geometry.l0_origin_x) // geometry.l0_stride).astype(np.int64), 0, geometry.cols - 1)
    rows = np.clip(((l0_y - geometry.l0_origin_y) // geometry.l0_stride).astype(np.int64), 0, geometry.rows - 1)
    row_runs = np.bincount(rows, minlength=geometry.rows)
    col_runs = np.bincount(cols, minlength=geometry.cols)
    # Every cell is one overlay over the greyed thumbnail: the colour map at ``opacity``
    # where classified (the viewer's and the exports' viridis table and rounding, so every
    # picture agrees), the viewer's veil where screened negative, nothing elsewhere; as
    # integers, pixel = (colour * alpha + base * (256 - alpha)) >> 8, alpha 0 keeps the base.
    has_cell = np.isfinite(encoded) & (encoded >= 0)
    screened_cell = encoded == ENCODED[CellState.SCREENED_NEGATIVE]
    alpha_cell = np.zeros(encoded.shape, np.uint16)
    tint_cell = np.zeros(encoded.shape + (3,), np.uint16)  # colour * alpha
    a = round(opacity * 256)
    alpha_cell[has_cell] = a
    tint_cell[has_cell] = colormap_lut(DEFAULT_COLORMAP).astype(np.uint16)[lut_indices(encoded[has_cell])] * a
    *veil_rgb, veil_alpha = SCREENED_RGBA
    va = round(veil_alpha * 256 / 255)
    alpha_cell[screened_cell] = va
    tint_cell[screened_cell] = np.asarray(veil_rgb, np.uint16) * va
    base = heatmap_base(thumbnail) if base is None else base
    out = np.empty_like(base)
    # one band of pixel rows per map row, its columns as runs (a cell covers hundreds of
    # thumbnail pixels): small arrays that stay in cache, and rows without an overlay copied
    y = 0
    for r in np.flatnonzero(row_runs):
        band = slice(y, y + int(row_runs[r]))
        y = band.stop
        if not alpha_cell[r].any():
            out[band] = base[band]
            continue
        keep = np.repeat(256 - alpha_cell[r], col_runs)[None, :, None]
        mixed = base[band] * keep  # uint16: at most 255 * 256
        mixed += np.repeat(tint_cell[r], col_runs, axis=0)[None]
        mixed >>= 8
        out[band] = mixed
    # what the colours mean, in the corner with the least tissue (none on a small picture)
    draw_heatmap_key(out, encoded, opacity, heatmap_base(np.asarray(TISSUE_RGB, np.uint8).reshape(1, 1, 3))[0, 0],
                     screened=bool(screened_cell.any()))
    # libdeflate's level 1 and the "sub" filter (``png_bytes``): the same pixels as libpng's
    # zlib level 1 (itself half the time of Pillow's level 3) in ~55 % of its time, a file ~4 %
    # larger; on a small screened node this was most of the writing
    atomic_write_bytes(path, rgb_png_bytes(out))
    return path


def in_background(write: Callable[..., Path], *args: Any, **kwargs: Any) -> Future[Path]:
    """``write(*args, **kwargs)`` on a thread of its own; its future gives the path written or
    raises what the write raised."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="histoviewer-analyze-write")
    try:
        return pool.submit(write, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)  # the thread ends when the write is done


def _relocated(summary: SlideSummary, tmp: Path, final: Path) -> SlideSummary:
    """``summary`` with every path under ``tmp`` moved under ``final``."""

    def move(value: object) -> object:
        text = str(value) if isinstance(value, str) else None
        if text is not None and (
            text == str(tmp) or text.startswith(str(tmp) + os.sep)
        ):
            return str(final) + text[len(str(tmp)) :]
        return value

    files = summary.files
    moved = dataclasses.replace(
        files,
        **{f.name: move(getattr(files, f.name)) for f in dataclasses.fields(files)},
    )
    return dataclasses.replace(summary, out_dir=str(final), files=moved)


def write_relocated_summary(summary: SlideSummary, tmp: Path, final: Path) -> SlideSummary:
    """``summary`` of an analysis written into ``tmp`` that will be moved to ``final``: its
    paths under ``final``, and ``tmp/summary.json`` rewritten so."""
    moved = _relocated(summary, tmp, final)
    atomic_write_text(tmp / "summary.json", strict_dumps(moved.to_dict(), indent=2))
    return moved


def analyze_into(
    folder: str | os.PathLike[str], analyse: Callable[[Path], SlideSummary]
) -> SlideSummary:
    """Run ``analyse(temporary folder)`` and make that folder ``folder`` once complete (an
    earlier analysis there is replaced: ``jobs.slide_folders`` chose a name that may be, an
    export's analysis cache replaces what it could not use). On any
    failure nothing changes at ``folder``. Raises ``WriteError`` naming the file that
    could not be written, and whatever ``analyse`` raises."""
    final = Path(folder)
    with atomic_folder(final, replace=True) as tmp:
        try:
            summary = _relocated(analyse(tmp), tmp, final)
            atomic_write_text(
                tmp / "summary.json", strict_dumps(summary.to_dict(), indent=2)
            )
        except HistoViewerError as exc:
            if str(tmp) not in str(exc):
                raise
            # name the file the user will look for, not the temporary folder that is gone
            renamed = type(exc)(
                str(exc).replace(str(tmp), str(final)), setting=exc.setting
            )
            raise renamed from exc
    return summary
