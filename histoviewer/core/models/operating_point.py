"""Choosing a model's operating point on its validation part, after calibration.

A patch is called tumour when its (calibrated) probability is ``>= threshold``. Every threshold
chosen here lies halfway between two neighbouring distinct validation probabilities, so the
sensitivity and specificity it was chosen for do not hinge on float32 versus float64 rounding
of the probabilities it is compared with.

Two rules (``OPERATING_RULES``):

- ``youden`` (the default): the threshold maximising sensitivity + specificity - 1. The operating
  point draws lesions, measures them and decides node labels, and a slide has thousands of
  normal patches for each tumour patch, so a patch-level false-alarm rate of 30 % (what
  sensitivity 0.95 costs the shipped models on validation) adds false lesions and halos: on the
  held-out phantoms the handcrafted model then reports isolated tumour cells on the negative
  node (pN0(i+) for pN0) and the CNN measures a 0.9 mm micrometastasis as 1.27 mm, where
  Youden's point gives pN0 and 0.93 mm (docs/benchmarks.md). The heatmap still shows every
  probability.
- ``sensitivity``: screening, the highest threshold with validation sensitivity >= a target.

``threshold_options`` records the chosen rule and the alternatives (Youden, sensitivity 0.95
and 0.90, specificity 0.95) with their validation numbers, so the choice can be argued and a
user can read a model at another point.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from histoviewer.core.errors import ModelError
from histoviewer.core.models.calibration import (
    CALIBRATION_KEY,
    Calibration,
    fit_calibration,
)
from histoviewer.core.models.classifier import ModelInfo, OperatingPoint

__all__ = [
    "DEFAULT_OPERATING_RULE",
    "DEFAULT_TARGET_SENSITIVITY",
    "OPERATING_RULES",
    "THRESHOLD_OPTIONS_KEY",
    "ThresholdChoice",
    "calibrate_and_choose",
    "threshold_for_sensitivity",
    "threshold_for_specificity",
    "threshold_options",
    "youden_threshold",
]

DEFAULT_TARGET_SENSITIVITY = 0.95
OPERATING_RULES = ("youden", "sensitivity")
DEFAULT_OPERATING_RULE = "youden"
THRESHOLD_OPTIONS_KEY = "threshold_options"  # ModelInfo.extra key
_LO, _HI = 1e-6, 1.0 - 1e-6  # an OperatingPoint threshold lies strictly inside (0, 1)


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold and the sensitivity/specificity it gives on the patches it was chosen on."""

    rule: str
    threshold: float
    sensitivity: float
    specificity: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _checked(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).astype(np.int64).ravel()
    p = np.asarray(probs, np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ModelError(f"labels {y.shape} and probabilities {p.shape} must be equal and non-empty")
    if not ((y == 1).any() and (y == 0).any()):
        raise ModelError("an operating point needs validation patches of both classes")
    return y, p


def _between(p: np.ndarray, above: float) -> float:
    """Halfway from ``above`` down to the next lower distinct value of ``p`` (0 if none)."""
    lower = p[p < above]
    below = float(lower.max()) if lower.size else 0.0
    return float(np.clip(0.5 * (above + below), _LO, _HI))


def _rates(y: np.ndarray, p: np.ndarray, t: float) -> tuple[float, float]:
    pred = p >= t
    return float(np.mean(pred[y == 1])), float(np.mean(~pred[y == 0]))


def _choice(rule: str, y: np.ndarray, p: np.ndarray, t: float) -> ThresholdChoice:
    sens, spec = _rates(y, p, t)
    return ThresholdChoice(rule, float(t), sens, spec)


def threshold_for_sensitivity(labels: np.ndarray, probs: np.ndarray, target: float) -> ThresholdChoice:
    """The highest threshold whose sensitivity is ``>= target`` (so the best specificity there)."""
    if not 0.0 < target <= 1.0:
        raise ModelError(f"a target sensitivity must be in (0, 1], got {target}", setting="target_sensitivity")
    y, p = _checked(labels, probs)
    pos = np.sort(p[y == 1])[::-1]
    k = max(1, math.ceil(target * pos.size - 1e-9))  # positives that must lie at or above t
    return _choice(f"sensitivity >= {target:g}", y, p, _between(p, float(pos[k - 1])))


def threshold_for_specificity(labels: np.ndarray, probs: np.ndarray, target: float) -> ThresholdChoice:
    """The lowest threshold whose specificity is ``>= target`` (so the best sensitivity there)."""
    if not 0.0 < target <= 1.0:
        raise ModelError(f"a target specificity must be in (0, 1], got {target}")
    y, p = _checked(labels, probs)
    neg = np.sort(p[y == 0])
    m = max(1, math.ceil(target * neg.size - 1e-9))  # negatives that must lie below t
    higher = p[p > neg[m - 1]]
    t = 0.5 * (float(neg[m - 1]) + float(higher.min())) if higher.size else _HI
    return _choice(f"specificity >= {target:g}", y, p, float(np.clip(t, _LO, _HI)))


def youden_threshold(labels: np.ndarray, probs: np.ndarray) -> ThresholdChoice:
    """The threshold maximising sensitivity + specificity - 1 (Youden's J)."""
    y, p = _checked(labels, probs)
    candidates = np.unique(p)  # each distinct value as "p >= value"
    order = np.argsort(p)
    ys, ps = y[order], p[order]
    # for candidate c: negatives below c, positives at or above c
    neg_below = np.searchsorted(ps[ys == 0], candidates, side="left")
    pos_below = np.searchsorted(ps[ys == 1], candidates, side="left")
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    j = (n_pos - pos_below) / n_pos + neg_below / n_neg - 1.0
    best = float(candidates[int(np.argmax(j))])
    return _choice("Youden (max sensitivity + specificity - 1)", y, p, _between(p, best))


def threshold_options(labels: np.ndarray, probs: np.ndarray, target_sensitivity: float,
                      rule: str = DEFAULT_OPERATING_RULE) -> dict[str, Any]:
    """The chosen rule (``rule``: "youden" or "sensitivity" with ``target_sensitivity``) and its
    alternatives, for ``ModelInfo.extra["threshold_options"]``."""
    if rule not in OPERATING_RULES:
        raise ModelError(f"unknown operating point rule {rule!r}; known: {', '.join(OPERATING_RULES)}",
                         setting="operating_rule")
    screening = threshold_for_sensitivity(labels, probs, target_sensitivity)
    youden = youden_threshold(labels, probs)
    options = {
        "chosen": youden if rule == "youden" else screening,
        "youden": youden,
        f"sensitivity_{target_sensitivity:.2f}": screening,
        "sensitivity_0.90": threshold_for_sensitivity(labels, probs, 0.90),
        "specificity_0.95": threshold_for_specificity(labels, probs, 0.95),
    }
    return {k: v.to_dict() for k, v in options.items()}


def calibrate_and_choose(
    info: ModelInfo,
    valid_logits: np.ndarray,
    valid_labels: np.ndarray,
    *,
    method: str,
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
    rule: str = DEFAULT_OPERATING_RULE,
    data: str = "validation",
) -> tuple[ModelInfo, Calibration, np.ndarray]:
    """Fit ``method`` on the validation logits, then choose the operating point on the calibrated
    validation probabilities; returns the updated info, the calibration and those probabilities."""
    cal = fit_calibration(valid_logits, valid_labels, method, data=data)
    probs = cal.apply(valid_logits)
    options = threshold_options(valid_labels, probs, target_sensitivity, rule)
    chosen = options["chosen"]
    point = OperatingPoint(threshold=chosen["threshold"], target=chosen["rule"],
                           sensitivity=chosen["sensitivity"], specificity=chosen["specificity"],
                           n_valid=int(np.asarray(valid_labels).size), data=data)
    extra = {**info.extra, CALIBRATION_KEY: cal.to_dict(), THRESHOLD_OPTIONS_KEY: options}
    return replace(info, operating_point=point, extra=extra), cal, probs
