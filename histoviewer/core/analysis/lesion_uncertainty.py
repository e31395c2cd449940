"""Per-lesion uncertainty: the test-time-augmentation uncertainty map read over each lesion.

A lesion is an 8-connected region of probability-map cells at or above the threshold
(``lesions.find_lesions``); its uncertainty is the mean and the maximum of the uncertainty
map (``inference.uncertainty_map``: the standard deviation of P(tumour) over the 8 rotations
and mirrors of each patch, 0..0.5) over those cells. Only cells whose uncertainty was
computed count; ``computed_fraction`` says how many of the lesion's cells that is, and a
lesion with none has no uncertainty (None), never a 0 that would read as "certain".
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

from histoviewer.core.analysis.lesions import Lesion, MapFrame, probabilities_of

__all__ = ["LesionUncertainty", "lesion_uncertainties", "with_uncertainty"]


@dataclasses.dataclass(frozen=True)
class LesionUncertainty:
    """``mean``/``max``: TTA uncertainty (std of P over 8 views, 0..0.5) over the lesion's
    computed cells, None when none was computed; ``computed_fraction`` 0..1 of its cells."""

    mean: float | None
    max: float | None
    computed_fraction: float


def _component_cells(labels: np.ndarray, lesion: Lesion, frame: MapFrame) -> np.ndarray:
    """Boolean rows x cols: the component of ``labels`` that ``lesion`` was measured from.

    The outline is window-corrected (smaller than its cells), so it is located by the map
    cells under its outline vertices, centroid and diameter ends: the component most of them
    fall in. Falls back to those cells themselves when none is in a component."""
    rows, cols = labels.shape
    points = [*lesion.l0_outline, lesion.l0_centroid, *lesion.l0_diameter_ends]
    hits: list[int] = []
    cells: list[tuple[int, int]] = []
    for x, y in points:
        c = math.floor((x - frame.l0_origin_x) / frame.l0_cell)
        r = math.floor((y - frame.l0_origin_y) / frame.l0_cell)
        if 0 <= r < rows and 0 <= c < cols:
            cells.append((r, c))
            if labels[r, c]:
                hits.append(int(labels[r, c]))
    if hits:
        return labels == np.bincount(hits).argmax()
    mask = np.zeros(labels.shape, bool)
    for r, c in cells:
        mask[r, c] = True
    return mask


def lesion_uncertainties(
    probability: np.ndarray,
    uncertainty: np.ndarray,
    frame: MapFrame,
    threshold: float,
    lesions: tuple[Lesion, ...],
) -> tuple[LesionUncertainty, ...]:
    """The uncertainty of each lesion (same order). ``probability`` and ``uncertainty``: the
    encoded maps (rows x cols, same grid); ``threshold``: the one the lesions were found at."""
    prob = probabilities_of(probability)
    unc = np.asarray(uncertainty, np.float64)
    if unc.shape != prob.shape:
        raise ValueError(
            f"the uncertainty map {unc.shape} is not on the probability map's grid {prob.shape}"
        )
    labels, _ = ndimage.label(prob >= threshold, structure=np.ones((3, 3), bool))
    known = np.isfinite(unc) & (unc >= 0)
    out = []
    for lesion in lesions:
        mask = _component_cells(labels, lesion, frame)
        n = int(mask.sum())
        values = unc[mask & known]
        if values.size == 0:
            out.append(LesionUncertainty(None, None, 0.0))
            continue
        out.append(
            LesionUncertainty(
                float(values.mean()), float(values.max()), values.size / max(n, 1)
            )
        )
    return tuple(out)


def with_uncertainty(
    lesions: tuple[Lesion, ...], found: tuple[LesionUncertainty, ...]
) -> tuple[Lesion, ...]:
    """``lesions`` carrying their uncertainty (``Lesion.tta_uncertainty_*`` fields)."""
    return tuple(
        dataclasses.replace(
            les,
            tta_uncertainty_mean=u.mean,
            tta_uncertainty_max=u.max,
            tta_uncertainty_computed=u.computed_fraction,
        )
        for les, u in zip(lesions, found, strict=True)
    )
