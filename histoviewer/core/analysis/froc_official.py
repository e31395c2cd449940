"""The CAMELYON16 FROC exactly as the challenge's own evaluation script computes it.

``froc.py`` measures lesions on the slide's true geometry (the *exact-geometry* variant);
this module reproduces the rules of the challenge's ``Evaluation_FROC.py`` (Ehteshami
Bejnordi, 2016), so that a number called "CAMELYON16 FROC" is the number the challenge would
give. Written from the script's rules, not from its code:

1. Every slide is taken at ``L0_MPP`` = 0.243 um/px, whatever its real scale (the Utrecht
   slides are ~0.226 um/px: their lesions are treated as 7 % larger), and evaluated on
   pyramid level ``LEVEL`` = 5, i.e. a raster of 32 x 32 level-0 px.
2. The evaluation mask: tumour pixels of the level-5 mask; every pixel whose Euclidean
   distance (in level-5 px) to tumour is *strictly* below ``75 / (0.243 * 32 * 2)`` (~4.82 px)
   joins them; holes are filled; 8-connected regions are labelled (one region, one lesion).
3. ITCs: regions whose major axis (``regionprops``, equivalent ellipse) is strictly below
   ``275 / (0.243 * 32)`` (~35.4 px). Detections on them count neither way.
4. A detection ``probability,x,y`` hits the region under level-5 pixel
   ``(int(y) // 32, int(x) // 32)``; outside every region it is a false positive (on a slide
   without tumour, every detection is). A lesion's score is its highest hit, stored as
   float32 and starting at 0: a hit of probability 0 never raises it, so it stays missed.
5. Thresholds: every distinct value among the false-positive probabilities and the lesion
   scores (missed lesions and ITCs contribute 0), ascending, **without the lowest**; at each
   (compared in float64 with false positives, in float32 with the float32 lesion scores),
   FPs per slide = false positives >= t / slides and sensitivity = lesion scores >= t /
   required lesions; then the point (0, 0). The sensitivity at 1/4, 1/2, 1, 2, 4, 8 FPs per
   slide is ``numpy.interp`` on that curve (linear, held flat past its end), the score their
   mean.

The level-5 mask. The challenge read level 5 of its ``*_Mask.tif`` (made by ASAP from the
XML, with nearest-neighbour downsampling). Here level-5 pixel ``(i, j)`` is tumour when the
level-0 pixel ``(32 j, 32 i)`` is, and a level-0 pixel is tumour when its centre
``(x + 0.5, y + 0.5)`` lies in a tumour polygon and not in a cut-out. The mask is built over
the truth's bounding box (aligned to the 32-px grid, with room for the dilation) instead of
the whole slide; the two differ only for lesions within 5 level-5 px of the slide's edge.
A detection at negative coordinates is outside every region (the script's numpy indexing
would wrap around to the far edge).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage import draw, measure

from histoviewer.core.analysis.froc import (
    FP_RATES,
    Detection,
    EvaluationMask,
    FrocResult,
    SlideEvaluation,
    slide_auc,
)
from histoviewer.core.analysis.truth import Truth
from histoviewer.core.errors import EvaluationError

__all__ = ["L0_MPP", "LEVEL", "OFFICIAL_RULE", "evaluate_slide_official", "froc_official",
           "official_evaluation_mask"]

L0_MPP = 0.243
LEVEL = 5
_DOWNSAMPLE = 2**LEVEL
_DILATION_PX = 75.0 / (L0_MPP * _DOWNSAMPLE * 2)  # strict: distance < this joins the lesion
_ITC_MAJOR_AXIS_PX = 275.0 / (L0_MPP * _DOWNSAMPLE)  # strict: major axis < this is an ITC
OFFICIAL_RULE = ("official CAMELYON16 rule: level-5 mask (32 level-0 px), every slide at "
                 "0.243 um/px, lowest threshold dropped, sensitivity interpolated")


def official_evaluation_mask(truth: Truth) -> EvaluationMask | None:
    """The level-5 labelled evaluation mask of the challenge's rule (module docstring, 2-3);
    None without tumour polygons."""
    if not truth.tumour:
        return None
    pts = np.concatenate(truth.tumour)
    pad = math.ceil(_DILATION_PX) + 2  # level-5 px of room for the dilation
    j0 = math.floor(pts[:, 0].min() / _DOWNSAMPLE) - pad
    i0 = math.floor(pts[:, 1].min() / _DOWNSAMPLE) - pad
    j1 = math.floor(pts[:, 0].max() / _DOWNSAMPLE) + pad + 1
    i1 = math.floor(pts[:, 1].max() / _DOWNSAMPLE) + pad + 1
    shape = (i1 - i0, j1 - j0)
    tumour = np.zeros(shape, bool)

    def paint(poly: np.ndarray, value: bool) -> None:
        # level-5 px (i, j) samples the level-0 px centre (32 (j + j0) + 0.5, 32 (i + i0) + 0.5)
        rows = (poly[:, 1] - 0.5) / _DOWNSAMPLE - i0
        cols = (poly[:, 0] - 0.5) / _DOWNSAMPLE - j0
        rr, cc = draw.polygon(rows, cols, shape)
        tumour[rr, cc] = value

    for poly in truth.tumour:
        paint(poly, True)
    for poly in truth.excluded:
        paint(poly, False)
    if not tumour.any():
        # every tumour polygon falls between the level-5 samples: nothing on the mask, as in
        # the challenge's mask file
        return EvaluationMask(labels=np.zeros(shape, np.int32), l0_x0=float(j0 * _DOWNSAMPLE),
                              l0_y0=float(i0 * _DOWNSAMPLE), l0_px=float(_DOWNSAMPLE), itc=(),
                              major_axis_um=())
    distance = ndimage.distance_transform_edt(~tumour)
    filled = ndimage.binary_fill_holes(distance < _DILATION_PX)
    labels = measure.label(filled, connectivity=2)
    major_px = [float(p.axis_major_length) for p in measure.regionprops(labels)]
    return EvaluationMask(labels=labels, l0_x0=float(j0 * _DOWNSAMPLE), l0_y0=float(i0 * _DOWNSAMPLE),
                          l0_px=float(_DOWNSAMPLE), itc=tuple(m < _ITC_MAJOR_AXIS_PX for m in major_px),
                          major_axis_um=tuple(m * _DOWNSAMPLE * L0_MPP for m in major_px))


def _region_at(mask: EvaluationMask, l0_x: float, l0_y: float) -> int:
    if l0_x < 0 or l0_y < 0:
        return 0
    # the script reads integer coordinates and divides them by 2**level (integer division)
    i = int(l0_y) // _DOWNSAMPLE - int(mask.l0_y0) // _DOWNSAMPLE
    j = int(l0_x) // _DOWNSAMPLE - int(mask.l0_x0) // _DOWNSAMPLE
    if 0 <= i < mask.labels.shape[0] and 0 <= j < mask.labels.shape[1]:
        return int(mask.labels[i, j])
    return 0


def evaluate_slide_official(slide: str, truth: Truth, detections: Sequence[Detection], *,
                            slide_score: float | None = None) -> SlideEvaluation:
    """One slide under the challenge's rule (module docstring, 1-4). The slide's own scale is
    not used: the rule takes every slide at 0.243 um/px. A required lesion's score is None
    when missed (its float32 score stayed 0)."""
    mask = official_evaluation_mask(truth)
    n = 0 if mask is None else len(mask.itc)
    scores = np.zeros(n, np.float32)
    itc_hit: set[int] = set()
    fps: list[float] = []
    for d in detections:
        region = 0 if mask is None else _region_at(mask, d.l0_x, d.l0_y)
        if region == 0:
            fps.append(float(d.probability))
        elif mask.itc[region - 1]:
            itc_hit.add(region)
        elif np.float32(d.probability) > scores[region - 1]:
            scores[region - 1] = np.float32(d.probability)
    required = [k for k in range(n) if not mask.itc[k]] if mask else []
    score = slide_score if slide_score is not None else max((d.probability for d in detections), default=0.0)
    return SlideEvaluation(slide=slide,
                           lesion_scores=tuple(float(scores[k]) if scores[k] > 0 else None for k in required),
                           fp_scores=tuple(fps), itc_lesions=n - len(required), itc_detected=len(itc_hit),
                           has_tumour=bool(truth.tumour), slide_score=float(score))


def froc_official(slides: Sequence[SlideEvaluation], fp_rates: Sequence[float] = FP_RATES) -> FrocResult:
    """The challenge's FROC over slides from ``evaluate_slide_official`` (module docstring, 5)."""
    if not slides:
        raise EvaluationError("FROC needs at least one slide")
    n_lesions = sum(len(ev.lesion_scores) for ev in slides)
    if n_lesions == 0:
        raise EvaluationError("FROC is undefined without lesions that must be detected "
                              "(every slide is negative or has only ITCs)")
    # missed lesions and ITCs enter the threshold set as 0, as the script's score arrays do
    tp = np.array([s if s is not None else 0.0 for ev in slides for s in ev.lesion_scores]
                  + [0.0] * sum(ev.itc_lesions for ev in slides), np.float32)
    fp = np.array([s for ev in slides for s in ev.fp_scores], np.float64)
    thresholds = np.unique(np.concatenate([tp.astype(np.float64), fp]))[1:]  # ascending, lowest dropped
    # as the script's arrays compare: false positives in float64, float32 lesion scores in
    # float32 (numpy casts the threshold to the array's type)
    fps = [float(np.count_nonzero(fp >= t)) / len(slides) for t in thresholds] + [0.0]
    sens = [float(np.count_nonzero(tp >= np.float32(t))) / n_lesions for t in thresholds] + [0.0]
    at = {float(r): float(v) for r, v in zip(fp_rates, np.interp(fp_rates, fps[::-1], sens[::-1]))}
    # the curve as FrocResult holds it: strictest threshold first, the closing (0, 0) point
    # left out (it has no threshold)
    return FrocResult(fps_per_slide=tuple(fps[-2::-1]), sensitivity=tuple(sens[-2::-1]),
                      thresholds=tuple(float(t) for t in thresholds[::-1]), sensitivity_at=at,
                      score=float(np.mean(list(at.values()))), slides=len(slides), lesions=n_lesions,
                      itc_lesions=sum(ev.itc_lesions for ev in slides),
                      itc_detected=sum(ev.itc_detected for ev in slides), slide_auc=slide_auc(slides),
                      per_slide=tuple(slides), variant="official", rule=OFFICIAL_RULE)
