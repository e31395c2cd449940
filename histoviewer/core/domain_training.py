"""Add a domain profile to a trained classifier (a model file from before profiles, or a
profile fitted on other data, e.g. real + phantom patches).

The profile is fitted on a seeded sample of each patch set's *training* part and its
thresholds on the *validation* part, split as training split it (``train_valid_split`` with
the model's recorded seed and validation fraction), so the thresholds come from patches the
model did not learn from. See ``models.domain``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.domain import SLIDE_SHARE_THRESHOLD, DomainProfile
from histoviewer.core.models.domain_fit import (
    DOMAIN_FIT_PATCHES,
    fit_classifier_domain,
    read_in_batches,
    sample_indices,
)
from histoviewer.core.patches.split import train_valid_split

__all__ = ["HELDOUT_PATCHES", "add_domain_profile", "training_split_of"]

HELDOUT_PATCHES = 3000  # validation patches per patch set the thresholds come from, at most


def training_split_of(classifier: PatchClassifier) -> tuple[int, float]:
    """(seed, validation fraction) the model's training recorded (0, 0.2 when it recorded none)."""
    rec = classifier.info.extra.get("training") or {}
    return int(rec.get("seed", 0)), float(rec.get("valid_fraction", 0.2))


def add_domain_profile(
    classifier: PatchClassifier,
    patch_sets: Sequence[Any],
    *,
    seed: int | None = None,
    valid_fraction: float | None = None,
    max_fit: int = DOMAIN_FIT_PATCHES,
    max_heldout: int = HELDOUT_PATCHES,
    slide_share_threshold: float = SLIDE_SHARE_THRESHOLD,
    log: Callable[[str], None] = lambda _msg: None,
) -> DomainProfile:
    """Fit ``classifier.domain`` on ``patch_sets`` (each split into training/validation parts
    as the model's training did; the fitting sample is shared out in proportion to size)."""
    if not patch_sets:
        raise PatchDataError("a domain profile needs at least one patch set")
    rec_seed, rec_fraction = training_split_of(classifier)
    seed = rec_seed if seed is None else seed
    valid_fraction = rec_fraction if valid_fraction is None else valid_fraction
    total = sum(len(ps) for ps in patch_sets)
    fit_parts: list[tuple[Any, np.ndarray]] = []
    held_parts: list[tuple[Any, np.ndarray]] = []
    for i, ps in enumerate(patch_sets):
        train_idx, valid_idx = train_valid_split(ps, valid_fraction, seed)
        share = max(1, round(max_fit * len(ps) / total))
        fit_parts.append((ps, sample_indices(train_idx, share, seed + i)))
        held_parts.append((ps, sample_indices(valid_idx, max_heldout, seed + i)))
        log(f"domain profile: {ps.description}: {len(fit_parts[-1][1])} training, "
            f"{len(held_parts[-1][1])} validation patches")

    def batches(parts: list[tuple[Any, np.ndarray]]):
        for ps, idx in parts:
            yield from read_in_batches(ps, idx)

    data = " + ".join(ps.description for ps in patch_sets)
    profile = fit_classifier_domain(classifier, batches(fit_parts), batches(held_parts), data=data,
                                    slide_share_threshold=slide_share_threshold)
    log(f"domain profile: {profile.dim} features, patch threshold {profile.patch_threshold:.2f} "
        f"(percentile {profile.patch_percentile:g} of {profile.n_heldout} validation patches)")
    return profile
