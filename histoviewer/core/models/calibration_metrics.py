"""How well calibrated a model's tumour probabilities are: ECE, Brier score, reliability bins.

ECE here is the binary one on the tumour probability: the patches are put in ``n_bins``
equal-width bins of predicted probability over [0, 1] (15 by default; the last bin includes
1.0), and ECE is the patch-weighted mean of |fraction of tumour patches - mean predicted
probability| over the non-empty bins. The Brier score is the mean squared difference between
probability and label (0 perfect, 0.25 for a constant 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ECE_BINS", "CalibrationMetrics", "ReliabilityBins", "brier_score",
           "calibration_metrics", "expected_calibration_error", "reliability_bins"]

ECE_BINS = 15


@dataclass(frozen=True)
class ReliabilityBins:
    """Per bin ``[edges[i], edges[i+1])``: patches, mean predicted probability and fraction of
    tumour patches (NaN for empty bins)."""

    edges: np.ndarray
    counts: np.ndarray
    mean_probability: np.ndarray
    tumour_fraction: np.ndarray


@dataclass(frozen=True)
class CalibrationMetrics:
    ece: float
    brier: float
    n_bins: int
    bins: ReliabilityBins

    def to_dict(self) -> dict[str, Any]:
        return {"ece": self.ece, "brier": self.brier, "ece_bins": self.n_bins,
                "ece_definition": f"{self.n_bins} equal-width bins of the tumour probability over [0, 1]"}


def _arrays(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, np.float64).ravel()
    p = np.asarray(probs, np.float64).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be equal and non-empty")
    return y, p


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> ReliabilityBins:
    y, p = _arrays(labels, probs)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(idx, weights=p, minlength=n_bins) / counts
        frac = np.bincount(idx, weights=y, minlength=n_bins) / counts
    return ReliabilityBins(edges, counts, mean_p, frac)


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> float:
    b = reliability_bins(labels, probs, n_bins)
    full = b.counts > 0
    gap = np.abs(b.tumour_fraction[full] - b.mean_probability[full])
    return float(np.sum(b.counts[full] * gap) / b.counts.sum())


def brier_score(labels: np.ndarray, probs: np.ndarray) -> float:
    y, p = _arrays(labels, probs)
    return float(np.mean((p - y) ** 2))


def calibration_metrics(labels: np.ndarray, probs: np.ndarray, n_bins: int = ECE_BINS) -> CalibrationMetrics:
    return CalibrationMetrics(expected_calibration_error(labels, probs, n_bins), brier_score(labels, probs),
                              n_bins, reliability_bins(labels, probs, n_bins))
