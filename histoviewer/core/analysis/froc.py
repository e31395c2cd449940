"""Lesion-level FROC and slide-level AUC on the slides' exact geometry (the "exact-geometry"
variant of the CAMELYON16 FROC). The number the challenge itself computes, with its level-5
mask, fixed 0.243 um/px, dropped lowest threshold and interpolation, is ``froc_official.py``;
this variant is the same definition measured on each slide's own scale:

Per slide:

1. The *evaluation mask*: the tumour polygons (minus their cut-outs) rasterised, dilated by
   ``dilation_um`` = 75 um ("the size of about five tumour cells"), holes filled and
   8-connected regions labelled; each region is one lesion. As in the challenge's script
   (distance transform < ``75 / (mpp * 2**level * 2)``), the 75 um is what the *diameter*
   grows by: every point within 37.5 um of tumour joins the region.
2. Regions whose major axis (of the equivalent ellipse, skimage ``axis_major_length``) is
   below ``itc_um`` = 275 um are ITCs, which a detector is not required to find: a hit on
   one is neither a true nor a false positive, and a miss costs nothing. 275 = 200 + 75:
   a lesion up to the 0.2 mm ITC limit, grown by the dilation.
3. A detection (a level-0 point with a probability above 0: a probability of 0 is no
   detection, as in the challenge, where it never counts) inside a required region is a hit on
   that lesion; a lesion's score is its highest-probability hit (it counts once). A
   detection outside every region is a false positive.

Over the slide set, for every threshold ``t`` (each distinct score): sensitivity = lesions
with score >= t / required lesions, FPs per slide = false positives >= t / slides. The
sensitivity at a rate ``f`` is the best sensitivity of any threshold with at most ``f`` FPs
per slide (a step function, no interpolation); the FROC score is the mean at 1/4, 1/2, 1,
2, 4 and 8 FPs per slide. Slide-level AUC ranks slides by their score (by default the
highest detection probability, 0 without detections) against "has tumour" (ITC-only slides
included, as in CAMELYON16).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from skimage import draw, measure

from histoviewer.core.analysis.truth import Truth
from histoviewer.core.errors import EvaluationError

__all__ = [
    "FP_RATES",
    "Detection",
    "EvaluationMask",
    "FrocResult",
    "SlideEvaluation",
    "evaluate_slide",
    "evaluation_mask",
    "froc",
    "slide_auc",
]
EXACT_GEOMETRY_RULE = ("exact-geometry variant: each slide's own scale, lesions rasterised at 4 um, "
                       "step-function sensitivity; not the challenge's official number")

FP_RATES = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
DILATION_UM = 75.0
ITC_MAJOR_AXIS_UM = 275.0
RASTER_UM = 4.0  # evaluation-mask pixel; grown when a slide's lesions span a huge area
MAX_RASTER_PX = 40_000_000


@dataclass(frozen=True)
class Detection:
    """One detected point (level-0 px) with its probability."""

    l0_x: float
    l0_y: float
    probability: float


@dataclass(frozen=True)
class EvaluationMask:
    """Labelled evaluation regions on a raster: raster px ``(i, j)`` covers level-0 px
    ``x in [l0_x0 + j * l0_px, + l0_px)``, y likewise with ``i``."""

    labels: np.ndarray
    l0_x0: float
    l0_y0: float
    l0_px: float
    itc: tuple[bool, ...]  # per region label 1..n
    major_axis_um: tuple[float, ...]

    def region_at(self, l0_x: float, l0_y: float) -> int:
        """Region label under a level-0 point (0: outside every lesion)."""
        j = math.floor((l0_x - self.l0_x0) / self.l0_px)
        i = math.floor((l0_y - self.l0_y0) / self.l0_px)
        if 0 <= i < self.labels.shape[0] and 0 <= j < self.labels.shape[1]:
            return int(self.labels[i, j])
        return 0


def evaluation_mask(truth: Truth, mpp: float, *, dilation_um: float = DILATION_UM,
                    itc_um: float = ITC_MAJOR_AXIS_UM, raster_um: float = RASTER_UM) -> EvaluationMask | None:
    """The labelled, dilated lesion regions of one slide; None without tumour polygons."""
    if not (mpp and mpp > 0 and math.isfinite(mpp)):
        raise EvaluationError(f"the slide's microns per pixel must be positive, got {mpp!r}")
    if not truth.tumour:
        return None
    pts = np.concatenate(truth.tumour)
    margin_l0 = (dilation_um / 2 + 2 * raster_um) / mpp
    x0, y0 = pts.min(axis=0) - margin_l0
    x1, y1 = pts.max(axis=0) + margin_l0
    area_um2 = (x1 - x0) * (y1 - y0) * mpp * mpp
    raster_um = max(raster_um, math.sqrt(area_um2 / MAX_RASTER_PX))
    l0_px = raster_um / mpp
    shape = (int(math.ceil((y1 - y0) / l0_px)), int(math.ceil((x1 - x0) / l0_px)))
    tumour = np.zeros(shape, bool)

    def fill(poly: np.ndarray, value: bool) -> None:
        # raster px (i, j) has its centre at l0 (x0 + (j + 0.5) * l0_px, ...)
        rr, cc = draw.polygon((poly[:, 1] - y0) / l0_px - 0.5, (poly[:, 0] - x0) / l0_px - 0.5, shape)
        tumour[rr, cc] = value
        if not value:
            return
        # a polygon thinner than a raster px still marks the px under its vertices
        vi = np.clip(((poly[:, 1] - y0) / l0_px).astype(np.int64), 0, shape[0] - 1)
        vj = np.clip(((poly[:, 0] - x0) / l0_px).astype(np.int64), 0, shape[1] - 1)
        tumour[vi, vj] = True

    for poly in truth.tumour:
        fill(poly, True)
    for poly in truth.excluded:
        fill(poly, False)
    distance_um = ndimage.distance_transform_edt(~tumour) * raster_um
    grown = ndimage.binary_fill_holes(distance_um <= dilation_um / 2)
    labels, n = ndimage.label(grown, structure=np.ones((3, 3), bool))
    props = measure.regionprops(labels)
    major = tuple(float(p.axis_major_length) * raster_um for p in props)
    return EvaluationMask(labels=labels, l0_x0=float(x0), l0_y0=float(y0), l0_px=float(l0_px),
                          itc=tuple(m < itc_um for m in major), major_axis_um=major)


@dataclass(frozen=True)
class SlideEvaluation:
    """One slide's contribution: required lesions' scores (None = missed), FP scores."""

    slide: str
    lesion_scores: tuple[float | None, ...]
    fp_scores: tuple[float, ...]
    itc_lesions: int
    itc_detected: int
    has_tumour: bool
    slide_score: float

    def to_dict(self) -> dict[str, Any]:
        return {"slide": self.slide, "lesions": len(self.lesion_scores),
                "detected": sum(s is not None for s in self.lesion_scores),
                "false_positives": len(self.fp_scores), "itc_lesions": self.itc_lesions,
                "itc_detected": self.itc_detected, "has_tumour": self.has_tumour,
                "slide_score": round(self.slide_score, 6)}


def evaluate_slide(slide: str, truth: Truth, detections: Sequence[Detection], mpp: float | None, *,
                   dilation_um: float = DILATION_UM, itc_um: float = ITC_MAJOR_AXIS_UM,
                   raster_um: float = RASTER_UM, slide_score: float | None = None) -> SlideEvaluation:
    """Match ``detections`` to the lesions of ``truth`` (see the module docstring)."""
    mask = None
    if truth.tumour:
        if mpp is None:
            raise EvaluationError(f"{slide}: the slide's microns per pixel are needed to grow its "
                                  "lesions by the evaluation distance")
        mask = evaluation_mask(truth, mpp, dilation_um=dilation_um, itc_um=itc_um, raster_um=raster_um)
    n = 0 if mask is None else len(mask.itc)
    best: dict[int, float] = {}
    fps: list[float] = []
    for d in detections:
        if not d.probability > 0:
            continue  # a detection of probability 0 is none (module docstring, 3)
        region = 0 if mask is None else mask.region_at(d.l0_x, d.l0_y)
        if region == 0:
            fps.append(float(d.probability))
        else:
            best[region] = max(best.get(region, -math.inf), float(d.probability))
    required = [k for k in range(1, n + 1) if not mask.itc[k - 1]] if mask else []
    itc = [k for k in range(1, n + 1) if mask.itc[k - 1]] if mask else []
    score = slide_score if slide_score is not None else max((d.probability for d in detections), default=0.0)
    return SlideEvaluation(slide=slide, lesion_scores=tuple(best.get(k) for k in required),
                           fp_scores=tuple(fps), itc_lesions=len(itc),
                           itc_detected=sum(k in best for k in itc), has_tumour=bool(truth.tumour),
                           slide_score=float(score))


@dataclass(frozen=True)
class FrocResult:
    """FROC curve (FPs per slide, sensitivity, one point per threshold, most permissive last),
    sensitivity at ``FP_RATES``, their mean, slide AUC (None when undefined)."""

    fps_per_slide: tuple[float, ...]
    sensitivity: tuple[float, ...]
    thresholds: tuple[float, ...]
    sensitivity_at: dict[float, float]
    score: float
    slides: int
    lesions: int
    itc_lesions: int
    itc_detected: int
    slide_auc: float | None
    per_slide: tuple[SlideEvaluation, ...] = field(default=(), compare=False)
    variant: str = "exact-geometry"  # or "official" (froc_official.py)
    rule: str = EXACT_GEOMETRY_RULE

    def to_dict(self) -> dict[str, Any]:
        return {"froc": round(self.score, 6), "variant": self.variant, "rule": self.rule,
                "sensitivity_at_fps_per_slide": {str(k): round(v, 6) for k, v in self.sensitivity_at.items()},
                "slides": self.slides, "lesions": self.lesions, "itc_lesions": self.itc_lesions,
                "itc_detected": self.itc_detected,
                "slide_auc": None if self.slide_auc is None else round(self.slide_auc, 6),
                "curve": [{"threshold": t, "fps_per_slide": f, "sensitivity": s}
                          for t, f, s in zip(self.thresholds, self.fps_per_slide, self.sensitivity)],
                "per_slide": [s.to_dict() for s in self.per_slide]}


def froc(slides: Sequence[SlideEvaluation], fp_rates: Sequence[float] = FP_RATES) -> FrocResult:
    """FROC over a slide set (see the module docstring)."""
    if not slides:
        raise EvaluationError("FROC needs at least one slide")
    scores = [s for ev in slides for s in ev.lesion_scores]
    n_lesions = len(scores)
    if n_lesions == 0:
        raise EvaluationError("FROC is undefined without lesions that must be detected "
                              "(every slide is negative or has only ITCs)")
    hit = np.array([s for s in scores if s is not None], np.float64)
    fp = np.array([s for ev in slides for s in ev.fp_scores], np.float64)
    thresholds = np.unique(np.concatenate([hit, fp]))[::-1]  # strictest first
    fps = [float(np.count_nonzero(fp >= t)) / len(slides) for t in thresholds]
    sens = [float(np.count_nonzero(hit >= t)) / n_lesions for t in thresholds]
    at = {}
    for rate in fp_rates:
        ok = [s for f, s in zip(fps, sens) if f <= rate]
        at[float(rate)] = max(ok, default=0.0)
    return FrocResult(fps_per_slide=tuple(fps), sensitivity=tuple(sens),
                      thresholds=tuple(float(t) for t in thresholds), sensitivity_at=at,
                      score=float(np.mean(list(at.values()))), slides=len(slides), lesions=n_lesions,
                      itc_lesions=sum(ev.itc_lesions for ev in slides),
                      itc_detected=sum(ev.itc_detected for ev in slides), slide_auc=slide_auc(slides),
                      per_slide=tuple(slides))


def slide_auc(slides: Sequence[SlideEvaluation]) -> float | None:
    """Slide-level AUC of the slides' scores against "has tumour"; None with one class only."""
    labels = [ev.has_tumour for ev in slides]
    if all(labels) or not any(labels):
        return None
    # Lazy: scikit-learn takes ~0.5 s to import, as long as the whole CLI's start-up.
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, [ev.slide_score for ev in slides]))
