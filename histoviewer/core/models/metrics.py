"""Patch-level metrics: AUC, accuracy, sensitivity, specificity, confusion matrix, ROC curve.

scikit-learn computes them; this module only fixes the conventions (label 1 = tumour,
threshold on the tumour probability, AUC undefined when only one class is present).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

__all__ = ["PatchMetrics", "RocCurve", "binary_metrics", "roc"]


@dataclass(frozen=True)
class PatchMetrics:
    """Counts and rates at ``threshold``; ``auc`` is None when one class is absent."""

    n: int
    positives: int
    negatives: int
    threshold: float
    auc: float | None
    accuracy: float
    sensitivity: float | None
    specificity: float | None
    tn: int
    fp: int
    fn: int
    tp: int

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["confusion_matrix"] = {"rows": "true normal, true tumour",
                                   "cols": "predicted normal, predicted tumour",
                                   "values": [[self.tn, self.fp], [self.fn, self.tp]]}
        return out


@dataclass(frozen=True)
class RocCurve:
    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> PatchMetrics:
    y = np.asarray(labels).astype(np.int64).ravel()
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be equal and non-empty")
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fn = int(np.sum(~pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    pos, neg = tp + fn, tn + fp
    auc = float(roc_auc_score(y, p)) if pos and neg else None
    return PatchMetrics(
        n=int(y.size), positives=pos, negatives=neg, threshold=float(threshold), auc=auc,
        accuracy=(tp + tn) / y.size,
        sensitivity=tp / pos if pos else None,
        specificity=tn / neg if neg else None,
        tn=tn, fp=fp, fn=fn, tp=tp,
    )


def roc(labels: np.ndarray, probs: np.ndarray) -> RocCurve | None:
    """The ROC curve, or None when only one class is present."""
    y = np.asarray(labels).astype(np.int64).ravel()
    if y.min(initial=0) == y.max(initial=0):
        return None
    fpr, tpr, thr = roc_curve(y, np.asarray(probs, dtype=np.float64).ravel())
    return RocCurve(fpr, tpr, thr)
