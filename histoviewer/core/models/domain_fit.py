"""Fit a classifier's domain profile from patches (training and ``add-domain``).

Kept apart from ``domain.py`` (numpy only, imported by every front end) because it runs the
classifier over patches; it knows patch sets only as "something with ``read(indices)``", so
the models layer stays below the patch readers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from histoviewer.core.errors import ModelError
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.domain import (
    PATCH_PERCENTILE,
    SLIDE_SHARE_THRESHOLD,
    DomainProfile,
    fit_domain_profile,
    tissue_descriptor,
)

__all__ = ["DOMAIN_FIT_PATCHES", "domain_features_of", "fit_classifier_domain", "sample_indices"]

# Training patches the Gaussian is fitted on (a seeded sample): plenty for a ~40-dimensional
# covariance with shrinkage; ~20 s of descriptors on a CPU.
DOMAIN_FIT_PATCHES = 4000


def sample_indices(indices: Sequence[int] | np.ndarray, n: int, seed: int) -> np.ndarray:
    """At most ``n`` of ``indices``, a seeded sample in ascending order (cheap reads)."""
    idx = np.asarray(indices, np.int64)
    if len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, size=n, replace=False))


def domain_features_of(classifier: PatchClassifier, batches: Iterable[np.ndarray]) -> np.ndarray:
    """The tissue descriptors (``domain.tissue_descriptor``) of every patch in ``batches``,
    at the classifier's input scale."""
    parts = [tissue_descriptor(b, classifier.input.mpp) for b in batches if len(b)]
    if not parts:
        raise ModelError("no patches to fit a domain profile on")
    return np.concatenate(parts)


def read_in_batches(patch_set: Any, indices: np.ndarray, batch_size: int = 512) -> Iterable[np.ndarray]:
    for start in range(0, len(indices), batch_size):
        yield patch_set.read(indices[start:start + batch_size].tolist())


def fit_classifier_domain(
    classifier: PatchClassifier,
    fit_batches: Iterable[np.ndarray],
    heldout_batches: Iterable[np.ndarray],
    *,
    data: str = "",
    patch_percentile: float = PATCH_PERCENTILE,
    slide_share_threshold: float = SLIDE_SHARE_THRESHOLD,
) -> DomainProfile:
    """Fit ``classifier``'s profile on ``fit_batches`` (training patches) with thresholds
    from ``heldout_batches`` (validation patches), set it as ``classifier.domain`` and
    return it."""
    fit = domain_features_of(classifier, fit_batches)
    held = domain_features_of(classifier, heldout_batches)
    profile = fit_domain_profile(fit, held, data=data, patch_percentile=patch_percentile,
                                 slide_share_threshold=slide_share_threshold)
    classifier.domain = profile
    return profile
