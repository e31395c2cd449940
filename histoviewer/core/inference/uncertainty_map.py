"""The uncertainty map: test-time-augmentation disagreement of a model on the probability
map's own grid.

Each tissue patch is classified in its 8 dihedral views (``explain.tta``); the map holds the
standard deviation of the 8 calibrated probabilities (probability units, 0..0.5; 0 = every
view agrees). It lives on the same ``GridGeometry`` as the probability map, in the same cell
encoding (NaN not computed, -1 background, -2 failed), so a cell of one map is the same
tissue as that cell of the other, and with an overlapping grid a map cell is the mean over
its covering patches (``PredictionGrid.map``).

It is computed on request (the view, a region, the whole slide): 8x the model work of the
plain map. The work runs through the same pipeline as the plain map (``classify_cells``:
batched region reads on a reader thread, progress and cooperative cancellation), with
``TTAUncertaintyScorer`` in the model's slot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from histoviewer.core.atomic import atomic_write_bytes, atomic_write_text
from histoviewer.core.colormaps import colormap_lut
from histoviewer.core.explain.tta import N_VIEWS, model_threshold, tta_predict
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import ENCODED, CellState, PredictionGrid
from histoviewer.core.inference.outputs import map_tiff_bytes
from histoviewer.core.inference.overlay import HeatmapStyle
from histoviewer.core.inference.pipeline import PipelineTimes, classify_cells
from histoviewer.core.inference.regions import RegionCutter
from histoviewer.core.models.classifier import PatchClassifier, PatchScores
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.strict_json import strict_dumps

__all__ = [
    "UNCERTAINTY_BATCH_PATCHES",
    "UNCERTAINTY_COLORMAP",
    "UNCERTAINTY_DISPLAY_MAX",
    "UNCERTAINTY_ENCODING",
    "UNCERTAINTY_FILE",
    "UNCERTAINTY_MEANING",
    "UNCERTAINTY_SHOWN_FROM",
    "TTAUncertaintyScorer",
    "compute_uncertainty",
    "new_uncertainty_grid",
    "uncertainty_caveat",
    "uncertainty_style",
    "write_uncertainty_map",
]

UNCERTAINTY_FILE = "uncertainty.tiff"
UNCERTAINTY_MEANING = (
    "test-time-augmentation uncertainty: standard deviation of the calibrated P(tumour) over the "
    "8 rotations and mirrors of each patch (0 = every view agrees; 0.5 = half say 0, half say 1)"
)
UNCERTAINTY_ENCODING = {
    "uncertainty": "0..0.5 (" + UNCERTAINTY_MEANING + ")",
    "not_computed": "NaN",
    "background": ENCODED[CellState.BACKGROUND],
    "failed": ENCODED[CellState.FAILED],
}
# Patches per pipeline batch (each is 8 model passes): 64 x 8 = 512 views, the plain map's
# batch in model work, so progress and cancellation come as often as there.
UNCERTAINTY_BATCH_PATCHES = 64
# The colour scale runs from 0 to this standard deviation (higher values saturate): std 0.25
# is already strong disagreement (e.g. half the views at 0.25, half at 0.75), and the full
# 0..0.5 range would leave the usual values (0..0.15) in the darkest tenth of the scale.
UNCERTAINTY_DISPLAY_MAX = 0.25
# Cells whose views agree to within this std are left unpainted (like a probability below
# the threshold): the map draws the eye to where the orientation changes the answer.
UNCERTAINTY_SHOWN_FROM = 0.02
UNCERTAINTY_COLORMAP = "inferno"  # not viridis: never mistaken for the probability map
# Model kinds whose decision barely depends on orientation by construction (the handcrafted
# model's features are rotation invariant): their TTA uncertainty stays near 0 everywhere
# (docs/benchmarks.md: median 0.0000, 90th percentile 0.0005 on held-out patches, no better
# than chance at finding its errors), so a clear map from them must not read as "certain".
TTA_BLIND_KINDS = {"handcrafted": "its features ignore orientation"}


def uncertainty_caveat(model_kind: str) -> str:
    """What to say beside an uncertainty map of a model of this kind ("" when nothing)."""
    why = TTA_BLIND_KINDS.get(model_kind)
    if why is None:
        return ""
    return f"{model_kind} model: {why}, so this map stays near 0 and does not show where it errs"


class TTAUncertaintyScorer(PatchClassifier):
    """``model`` as the pipeline's classifier slot, scoring each patch by its TTA uncertainty:
    ``classify`` returns ``PatchScores`` whose ``probability`` field carries the standard
    deviation over the 8 views (not a probability), so ``classify_cells`` fills an uncertainty
    grid unchanged. Borrows ``model`` (one thread at a time, as every classifier)."""

    def __init__(self, model: PatchClassifier, threshold: float | None = None) -> None:
        self.model = model
        self.info = model.info
        self.threshold = (
            model_threshold(model) if threshold is None else float(threshold)
        )

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        return tta_predict(self.model, patches, self.threshold).uncertainty

    def classify(
        self, patches: np.ndarray, domain_mask: np.ndarray | None = None
    ) -> PatchScores:
        return PatchScores(self.predict_proba(patches))


def new_uncertainty_grid(geometry: GridGeometry, tissue: np.ndarray) -> PredictionGrid:
    """An empty uncertainty grid on ``geometry`` (the probability map's), ``tissue`` (rows x
    cols bool) its tissue cells: the rest is BACKGROUND, never computed."""
    return PredictionGrid(geometry, tissue)


def compute_uncertainty(
    grid: PredictionGrid,
    cutter: RegionCutter,
    model: PatchClassifier,
    cells: np.ndarray | None = None,
    *,
    threshold: float | None = None,
    batch_size: int = UNCERTAINTY_BATCH_PATCHES,
    block: int = 16,
    read_threads: int = 1,
    control: JobControl = NO_CONTROL,
    stage: str = "Uncertainty map (8 views a patch)",
) -> PipelineTimes:
    """Fill ``grid`` with the TTA uncertainty of ``cells`` (flat indices; None: every tissue
    cell) that are still not computed; failed reads and model failures mark cells FAILED.
    ``threshold``: the operating threshold (None: the model's). Progress: one ``control``
    stage in patches; ``Cancelled`` leaves the grid part-filled."""
    pending = grid.pending(None if cells is None else np.asarray(cells, np.int64))
    return classify_cells(
        grid,
        cutter,
        TTAUncertaintyScorer(model, threshold),
        pending,
        batch_size=batch_size,
        block=block,
        read_threads=read_threads,
        control=control,
        stage=stage,
    )


def uncertainty_style(
    opacity: float = 0.6, colormap: str = UNCERTAINTY_COLORMAP
) -> HeatmapStyle:
    """How the uncertainty map is coloured by ``overlay.HeatmapRaster``: the raster indexes
    its table by round(value * 255), so the table is stretched to put the whole colour map
    on 0..``UNCERTAINTY_DISPLAY_MAX`` (above it: the top colour); cells below
    ``UNCERTAINTY_SHOWN_FROM`` stay unpainted."""
    return HeatmapStyle(
        lut=stretched_lut(colormap), opacity=opacity, threshold=UNCERTAINTY_SHOWN_FROM
    )


def stretched_lut(colormap: str = UNCERTAINTY_COLORMAP) -> np.ndarray:
    """(256, 3) uint8: entry i (value i / 255) is the colour map at min(1, value / display max)."""
    base = colormap_lut(colormap)
    value = np.arange(256) / 255.0
    index = np.clip(np.rint(value / UNCERTAINTY_DISPLAY_MAX * 255), 0, 255).astype(
        np.int64
    )
    return np.ascontiguousarray(base[index])


def uncertainty_meta(
    geometry: GridGeometry,
    *,
    slide: str | None = None,
    model: ModelRecord | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The description (JSON) of an uncertainty map TIFF: geometry, encoding, what it means."""
    meta: dict[str, Any] = {
        "geometry": geometry.to_dict(),
        "encoding": UNCERTAINTY_ENCODING,
        "kind": "uncertainty",
        "method": f"test-time augmentation, {N_VIEWS} dihedral views (4 rotations x mirror)",
        "frame": "pixel (row, col) covers level-0 px x in [origin_x + col*l0_stride, +l0_stride), "
        "y likewise with row",
    }
    if threshold is not None:
        meta["threshold"] = float(threshold)
    if model is not None and (caveat := uncertainty_caveat(model.kind or "")):
        meta["caveat"] = caveat
    if slide is not None:
        meta["slide"] = slide
    if model is not None:
        meta["model"] = model.to_dict()
    return meta


def write_uncertainty_map(
    folder: Path,
    encoded: np.ndarray,
    geometry: GridGeometry,
    *,
    slide: str | None = None,
    model: ModelRecord | None = None,
    threshold: float | None = None,
) -> tuple[Path, Path]:
    """Write ``uncertainty.tiff`` (float32, the map TIFF format of ``outputs.map_tiff_options``)
    and ``uncertainty.json`` (its description) into ``folder``; returns both paths. Read it
    back with ``analysis.map_io.read_probability_map`` (same encoding and geometry)."""
    meta = uncertainty_meta(geometry, slide=slide, model=model, threshold=threshold)
    tiff_path, json_path = folder / UNCERTAINTY_FILE, folder / "uncertainty.json"
    atomic_write_bytes(tiff_path, map_tiff_bytes(encoded, geometry, meta))
    atomic_write_text(json_path, strict_dumps(meta, indent=2))
    return tiff_path, json_path
