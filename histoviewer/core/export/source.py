"""The probability map an export draws, with the model that made it.

``HeatmapData`` is the encoded map (float32 rows x cols: 0..1 probability, NaN not computed,
-1 background, -2 failed; see ``inference/grid.py``) with its ``GridGeometry`` and the
model record. Get one from a live ``PredictionGrid`` (the GUI), from the
``probability.tiff`` + ``probability.json`` that ``histoviewer analyze`` writes, or with
``heatmap_for_slide``, which reuses the viewer's heatmap cache or an earlier analysis and
runs ``analyze_slide`` only when neither has a complete map.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from histoviewer.core.analysis.map_io import check_map_values, read_map_meta
from histoviewer.core.analysis.summary import analysis_domain
from histoviewer.core.errors import ExportError, InferenceError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.inference.disk_cache import HeatmapCache
from histoviewer.core.inference.grid import PredictionGrid
from histoviewer.core.inference.outputs import analyze_into
from histoviewer.core.models.domain import DomainLimits, DomainVerdict, judge_slide
from histoviewer.core.models.model_file import read_model_info
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.models.registry import open_model, resolve_model_path
from histoviewer.core.paths import user_data_dir
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.slide import open_slide

log = logging.getLogger(__name__)

__all__ = ["HeatmapData", "heatmap_for_slide", "read_analysis"]


@dataclass(frozen=True, eq=False)
class HeatmapData:
    """An encoded probability map, its geometry and the record of the model that made it."""

    encoded: np.ndarray
    geometry: GridGeometry
    model: ModelRecord
    origin: str = ""  # where it came from: "grid", "cache", "analysis:<folder>"
    # whether the map's tissue lies inside what the model learned (None: not known here)
    domain: DomainVerdict | None = None

    def __post_init__(self) -> None:
        enc = np.asarray(self.encoded, np.float32)
        if enc.shape != self.geometry.shape:
            raise ExportError(f"probability map {enc.shape} does not match its grid {self.geometry.shape}")
        object.__setattr__(self, "encoded", enc)

    @classmethod
    def from_grid(cls, grid: PredictionGrid, model_info: Any, origin: str = "grid") -> HeatmapData:
        """From a live grid (the GUI's): a consistent snapshot of its map."""
        limits = DomainLimits.of_info(model_info)
        domain = DomainVerdict.not_assessed() if limits is None else judge_slide(
            grid.domain_distances(), limits, complete=grid.coverage() >= 1.0)
        return cls(grid.encoded_map(), grid.geometry, ModelRecord.from_info(model_info), origin, domain)

    def coverage(self) -> float:
        """Fraction of tissue map cells (not background) that were classified: a failed cell
        is not coverage (as in summary.json), nor is one not computed yet."""
        e = self.encoded
        tissue = np.count_nonzero(e != -1.0)
        done = np.count_nonzero(np.isfinite(e) & (e >= 0))
        return 1.0 if tissue == 0 else done / tissue

    def sample(self, l0_x: np.ndarray, l0_y: np.ndarray) -> np.ndarray:
        """Map values at level-0 points: ``l0_x`` (W,) and ``l0_y`` (H,) -> (H, W) float32.

        Nearest cell, no smoothing: an exported pixel shows exactly the value of the map
        cell it falls in. Points outside the grid are NaN (nothing drawn).
        """
        g = self.geometry
        cols = np.floor((np.asarray(l0_x, np.float64) - g.l0_origin_x) / g.l0_stride).astype(np.int64)
        rows = np.floor((np.asarray(l0_y, np.float64) - g.l0_origin_y) / g.l0_stride).astype(np.int64)
        cin = (cols >= 0) & (cols < g.cols)
        rin = (rows >= 0) & (rows < g.rows)
        out = self.encoded[np.clip(rows, 0, g.rows - 1)[:, None], np.clip(cols, 0, g.cols - 1)[None, :]]
        if not (cin.all() and rin.all()):
            out = np.where(rin[:, None] & cin[None, :], out, np.float32(np.nan))
        return out.astype(np.float32, copy=False)


def read_analysis(path: str | os.PathLike[str]) -> HeatmapData:
    """A map written by ``histoviewer analyze``: ``path`` is its ``probability.tiff`` or the
    folder holding it (with ``probability.json``)."""
    path = Path(path)
    tiff = path / "probability.tiff" if path.is_dir() else path
    try:
        meta = read_map_meta(tiff.with_suffix(".json"))  # errors name the .json
    except InferenceError as exc:
        raise ExportError(f"not a readable analysis result (probability.tiff + .json): {exc}") from exc
    try:
        encoded = tifffile.imread(tiff)
        check_map_values(np.asarray(encoded, np.float64), tiff)  # no +/-Inf, no empty or all-NaN map
    except InferenceError as exc:
        raise ExportError(str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise ExportError(f"{tiff}: not a readable analysis result (probability.tiff + .json): {exc}") from exc
    try:
        return HeatmapData(encoded, meta.geometry, meta.model, f"analysis:{tiff.parent}", analysis_domain(tiff.parent))
    except ExportError as exc:
        raise ExportError(f"{tiff}: {exc}") from exc


def _complete(data: HeatmapData) -> bool:
    return not np.isnan(data.encoded).any()


def _analysis_dir(root: Path, slide_path: Path, model_hash: str, geometry: GridGeometry) -> Path:
    key = HeatmapCache.for_slide(slide_path, model_hash, geometry).key
    return root / f"{slide_path.stem}-{key[:16]}"


def heatmap_for_slide(
    slide_path: str | os.PathLike[str],
    model_spec: str | os.PathLike[str],
    *,
    stride_px: int | None = None,
    analysis_root: str | os.PathLike[str] | None = None,
    cache_folder: Path | None = None,
    device: str = "auto",
    control: JobControl = NO_CONTROL,
    user_mpp: float | None = None,
    force_mpp: bool = False,
) -> HeatmapData:
    """The complete map of ``model_spec`` on a slide, computed only when not already known.
    ``user_mpp``/``force_mpp``: the pixel size the user states (``open_slide``), marked "user".

    Order: (1) the viewer's heatmap cache (``HeatmapCache``) when it holds a complete grid
    of this slide, model and stride; (2) an earlier analysis in ``analysis_root`` made with
    this model hash and geometry; (3) ``analyze_slide`` into that folder (the one pipeline,
    no second one here). ``analysis_root`` defaults to ``<user data dir>/analyses``.
    """
    slide_path = Path(slide_path)
    model_path = resolve_model_path(model_spec)
    info = read_model_info(model_path)
    with open_slide(slide_path, user_mpp=user_mpp, force_mpp=force_mpp) as reader:
        slide_info = reader.info
    if slide_info.mpp is None:
        raise ExportError(f"{slide_path}: the slide's scale (um/px) is unknown ({slide_info.mpp_note}); a model "
                          "cannot be run on it, so there is no heatmap to export", setting="mpp")
    geometry = GridGeometry.for_slide(slide_info.dimensions, slide_info.mpp, info.input.mpp,
                                      info.input.patch_px, stride_px, mpp_source=slide_info.mpp_source)
    if info.content_hash:
        grid = PredictionGrid(geometry)
        if HeatmapCache.for_slide(slide_path, info.content_hash, geometry, cache_folder).load(grid):
            data = HeatmapData.from_grid(grid, info, origin="cache")
            if _complete(data):
                return data
            log.info("%s: the cached heatmap is incomplete; analysing the slide", slide_path)
    root = Path(analysis_root) if analysis_root is not None else user_data_dir() / "analyses"
    folder = _analysis_dir(root, slide_path, info.content_hash or model_path.name, geometry)
    if (folder / "probability.tiff").is_file():
        try:
            data = read_analysis(folder)
        except ExportError as exc:
            log.warning("%s; analysing again", exc)
        else:
            same_model = data.model.content_hash in ("", info.content_hash)
            if same_model and data.geometry == geometry and _complete(data):
                return data
    model = open_model(model_path, device=device)
    try:
        # whole or not at all: a killed export never leaves a half analysis to be found later
        analyze_into(folder, lambda tmp: analyze_slide(slide_path, tmp, model, AnalyzeOptions(stride_px=stride_px, user_mpp=user_mpp,
                                                                                              force_mpp=force_mpp),
                                                       control=control))
    finally:
        model.close()
    return read_analysis(folder)


def clip_region(l0_size: tuple[int, int], region: tuple[float, float, float, float] | None,
                ) -> tuple[float, float, float, float]:
    """``region`` (x, y, w, h in level-0 px) clipped to the slide; the whole slide for None.

    Raises ``ExportError`` for a region that misses the slide or has no area.
    """
    w0, h0 = l0_size
    if region is None:
        return 0.0, 0.0, float(w0), float(h0)
    x, y, w, h = (float(v) for v in region)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        raise ExportError(f"region {region} must have a positive width and height")
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(w0), x + w), min(float(h0), y + h)
    if x1 <= x0 or y1 <= y0:
        raise ExportError(f"region {region} lies outside the slide ({w0} x {h0} level-0 px)")
    return x0, y0, x1 - x0, y1 - y0
