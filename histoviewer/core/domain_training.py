"""Add a domain profile to a trained classifier (a model file from before profiles, or a
profile fitted on other data, e.g. real + phantom patches).

The profile is fitted on a seeded sample of each patch set's *training* part and its
thresholds on its *validation* part; the *test* part is never read. A patch set the model's
training recorded as a source (``ModelInfo.extra["sources"]``, matched by the hash of its
ids) is cut again exactly as training cut it; any other set gets a seeded three-way cut of
its own. Patches go through the classifier's own input preparation (stain normalisation
when the model has one), as they do at inference. See ``models.domain``.
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
from histoviewer.core.patches.split import (
    DEFAULT_TEST_FRACTION,
    SplitRule,
    ids_sha256,
    three_way_split,
)

__all__ = ["HELDOUT_PATCHES", "add_domain_profile", "training_split_of"]

HELDOUT_PATCHES = 3000  # validation patches per patch set the thresholds come from, at most


def training_split_of(classifier: PatchClassifier) -> tuple[int, float]:
    """(split seed, validation fraction) the model's training recorded (0, 0.15 when it
    recorded none)."""
    rec = classifier.info.extra.get("training") or {}
    return int(rec.get("split_seed", rec.get("seed", 0))), float(rec.get("valid_fraction", 0.15))


def _parts(classifier: PatchClassifier, ps: Any, seed: int, valid_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) indices of ``ps``: the model's own cut when ``ps`` is one of its
    recorded sources, else a seeded three-way cut (its test part left unread)."""
    digest = ids_sha256(ps.ids)
    for source in classifier.info.extra.get("sources") or []:
        if source.get("ids_sha256") == digest and source.get("split"):
            rule = SplitRule.from_dict(source["split"])
            cut = three_way_split(ps, rule.valid_fraction, rule.test_fraction, rule.seed)
            return cut.part("train"), cut.part("valid")
    cut = three_way_split(ps, valid_fraction, DEFAULT_TEST_FRACTION, seed)
    return cut.part("train"), cut.part("valid")


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
        train_idx, valid_idx = _parts(classifier, ps, seed, valid_fraction)
        share = max(1, round(max_fit * len(ps) / total))
        fit_parts.append((ps, sample_indices(train_idx, share, seed + i)))
        held_parts.append((ps, sample_indices(valid_idx, max_heldout, seed + i)))
        log(f"domain profile: {ps.description}: {len(fit_parts[-1][1])} training, "
            f"{len(held_parts[-1][1])} validation patches")

    def batches(parts: list[tuple[Any, np.ndarray]]):
        for ps, idx in parts:
            for batch in read_in_batches(ps, idx):
                yield classifier.prepare_patches(batch)  # as inference sees them

    data = " + ".join(ps.description for ps in patch_sets)
    profile = fit_classifier_domain(classifier, batches(fit_parts), batches(held_parts), data=data,
                                    slide_share_threshold=slide_share_threshold)
    log(f"domain profile: {profile.dim} features, patch threshold {profile.patch_threshold:.2f} "
        f"(percentile {profile.patch_percentile:g} of {profile.n_heldout} validation patches)")
    return profile
