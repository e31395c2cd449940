"""One patch of a slide, looked at closely: what the viewer's patch inspector shows.

``inspect_point`` takes a level-0 point and answers with the grid patch that covers it (the
patch whose centre is nearest when the grid overlaps), read **exactly as the overlay reads
it** (``RegionCutter`` on the overlay's ``GridGeometry``: same pyramid level, same resampling,
same cut), then put through the model's own preparation (``prepare_patches``: checks and
stain normalisation) and asked for:

- the calibrated tumour probability and the map's value there, when the map has one;
- why: the Grad-CAM overlay (a CNN) or the feature terms (the handcrafted model);
- how stable the answer is: test-time augmentation over the 8 flips and rotations
  (``explain.tta``: the standard deviation of the 8 probabilities and the share of views whose
  call differs);
- whether the tissue is like the model's training tissue: the patch's distance to the model's
  domain profile against the profile's limit, or that the model has no profile.

Anything that makes the answer untrustworthy is said in ``warnings`` (glass, blank data, a
patch the overlay never classifies, out-of-domain tissue, a demonstration model).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from histoviewer.core.errors import InferenceError
from histoviewer.core.explain.contributions import (
    PatchContributions,
    feature_contributions,
)
from histoviewer.core.explain.tta import TTAResult, model_threshold, tta_predict
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.blank import BLANK_REASON, blank_patches
from histoviewer.core.inference.regions import RegionCutter, RegionJob, RegionSource
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.handcrafted import HandcraftedClassifier
from histoviewer.core.slide.reader import SlideReader

__all__ = [
    "PatchInspection",
    "inspect_point",
    "inspection_geometry",
    "nearest_patch_cell",
]


@dataclass(frozen=True)
class PatchInspection:
    """What the inspector shows for one patch (see the module docstring).

    ``cell``: flat index in ``geometry``; ``l0_rect``: the patch's level-0 (x, y, w, h);
    ``patch``: ``(P, P, 3)`` uint8 as read at the model's scale; ``seen``: as the model read
    it (stain-normalised when it is); ``probability``: calibrated P; ``map_probability``: the
    overlay's value for that cell (None: not computed); ``threshold``: the model's operating
    threshold; ``cam`` / ``contributions``: the explanation (one of them, or neither for
    another model kind); ``tta``: the 8-view answers; ``domain_distance`` / ``domain_limit``:
    None when the model has no domain profile; ``timings_s``: seconds per step.
    """

    l0_point: tuple[float, float]
    cell: int
    l0_rect: tuple[float, float, float, float]
    geometry: GridGeometry
    model_name: str
    model_caution: str
    patch: np.ndarray
    seen: np.ndarray
    probability: float
    threshold: float
    map_probability: float | None
    cam: Any  # explain.gradcam.GradCam (its module imports torch) or None
    contributions: PatchContributions | None
    tta: TTAResult
    domain_distance: float | None
    domain_limit: float | None
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def in_domain(self) -> bool | None:
        """True/False against the profile's patch limit; None: not assessed (no profile)."""
        if self.domain_distance is None or self.domain_limit is None:
            return None
        return self.domain_distance <= self.domain_limit


def inspection_geometry(
    reader: SlideReader, model: PatchClassifier, stride_divisor: int = 1
) -> GridGeometry:
    """The grid the overlay would use for this slide and model (``LiveHeatmap``'s rule), for
    a slide shown without an overlay; ``InferenceError`` when the slide's scale is unknown."""
    info = reader.info
    if info.mpp is None:
        raise InferenceError(
            f"{info.path.name}: the slide does not state its scale (microns per pixel), so no patch "
            "can be read at the model's scale",
            setting="mpp",
        )
    spec = model.input
    return GridGeometry.for_slide(
        info.dimensions,
        info.mpp,
        spec.mpp,
        spec.patch_px,
        spec.patch_px // max(1, stride_divisor),
        mpp_source=info.mpp_source,
    )


def nearest_patch_cell(geometry: GridGeometry, l0_x: float, l0_y: float) -> int | None:
    """The cell whose patch is centred nearest to a level-0 point (with no overlap: the one
    that contains it); None outside the grid."""
    half = (
        geometry.l0_patch - geometry.l0_stride
    ) / 2  # patch centre - map-cell centre
    return geometry.cell_at(l0_x - half, l0_y - half)


def inspect_point(
    reader: SlideReader,
    model: PatchClassifier,
    geometry: GridGeometry,
    l0_x: float,
    l0_y: float,
    *,
    source: RegionSource | None = None,
    tissue: np.ndarray | None = None,
    map_values: np.ndarray | None = None,
) -> PatchInspection:
    """Inspect the patch at a level-0 point (see the module docstring). ``source``: where the
    overlay reads pixels from (default the reader); ``tissue``: the grid's tissue mask
    (``(rows, cols)`` bool) when known; ``map_values``: the overlay's probability per cell
    (NaN or negative: not computed), for comparison. ``InferenceError`` outside the grid."""
    cell = nearest_patch_cell(geometry, l0_x, l0_y)
    if cell is None:
        raise InferenceError(
            f"the point ({l0_x:.0f}, {l0_y:.0f}) lies outside the slide's patch grid"
        )
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    r, c = divmod(cell, geometry.cols)
    cutter = RegionCutter(reader, geometry, source=source)
    patch = cutter(RegionJob(np.array([cell], np.int64), r, c, r, c))[0]
    t1 = time.perf_counter()
    times["read_s"] = t1 - t0
    batch = patch[None]
    seen = model.prepare_patches(batch)[0]
    scores = model.classify(batch)
    probability = float(scores.probability[0])
    t2 = time.perf_counter()
    times["classify_s"] = t2 - t1
    cam = contributions = None
    if model.info.kind == "cnn":
        # lazy: Grad-CAM imports torch (seconds of start-up); a CNN model has loaded it already
        from histoviewer.core.explain.gradcam import grad_cam

        cam = grad_cam(model, batch)
    elif isinstance(model, HandcraftedClassifier):
        contributions = feature_contributions(model, batch)[0]
    t3 = time.perf_counter()
    times["explain_s"] = t3 - t2
    tta = tta_predict(model, batch)
    times["tta_s"] = time.perf_counter() - t3
    distance = limit = None
    profile = getattr(model, "domain", None)
    if profile is not None and scores.domain_distance is not None:
        distance, limit = (
            float(scores.domain_distance[0]),
            float(profile.patch_threshold),
        )
    warnings = _warnings(model, patch, cell, geometry, tissue, distance, limit)
    map_p = None
    if map_values is not None:
        v = float(np.asarray(map_values).reshape(-1)[cell])
        map_p = v if np.isfinite(v) and 0 <= v <= 1 else None
    return PatchInspection(
        l0_point=(float(l0_x), float(l0_y)),
        cell=int(cell),
        l0_rect=geometry.cell_rect(cell),
        geometry=geometry,
        model_name=model.info.display_name(),
        model_caution=model.info.caution,
        patch=patch,
        seen=seen,
        probability=probability,
        threshold=model_threshold(model),
        map_probability=map_p,
        cam=cam,
        contributions=contributions,
        tta=tta,
        domain_distance=distance,
        domain_limit=limit,
        warnings=warnings,
        timings_s=times,
    )


def _warnings(
    model: PatchClassifier,
    patch: np.ndarray,
    cell: int,
    geometry: GridGeometry,
    tissue: np.ndarray | None,
    distance: float | None,
    limit: float | None,
) -> tuple[str, ...]:
    out = []
    if model.info.demonstration:
        out.append("demonstration model trained on synthetic tissue: not for diagnosis")
    if bool(blank_patches(patch[None])[0]):
        out.append(BLANK_REASON)
    if tissue is not None and not bool(np.asarray(tissue).reshape(-1)[cell]):
        out.append(
            "under 25 % tissue here: the overlay never classifies this patch; its P means little"
        )
    if distance is not None and limit is not None and distance > limit:
        out.append(
            f"tissue unlike the model's training data (distance {distance:.1f} > limit {limit:.1f}): "
            "do not trust this P"
        )
    if distance is None:
        out.append(
            "the model has no domain profile: whether this tissue is like its training data is not assessed"
        )
    if geometry.slide_mpp_source == "user":
        out.append(
            "the slide's scale (microns per pixel) was set by hand, not read from the file"
        )
    return tuple(out)
