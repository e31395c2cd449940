"""Train/validation split: stratified by label, whole groups (slides) kept together."""

from __future__ import annotations

import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.patches.base import PatchSet

__all__ = ["train_valid_split"]


def _stratified(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    valid = []
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        k = int(round(fraction * members.size))
        if fraction > 0 and members.size >= 2:
            k = min(max(k, 1), members.size - 1)  # both sides see every class
        valid.append(members[:k])
    return np.concatenate(valid) if valid else np.zeros(0, np.int64)


_EXHAUSTIVE_GROUPS = 14  # up to 2^14 subsets are scored at once; more groups: greedy


def _error(valid: np.ndarray, target: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return (((valid - target) / scale) ** 2).sum(-1)


def _by_group(
    labels: np.ndarray, groups: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Whole groups to validation, approaching ``fraction`` of every class (relative error).

    Few groups: every subset is scored and, where possible, only subsets leaving every class
    on both sides are kept (an AUC needs both classes). Many groups: greedy, visiting groups
    in random order and taking one when it lowers the error. Ties are broken by ``rng``.
    """
    classes = np.unique(labels)
    ids = np.unique(groups)
    counts = np.array([[np.sum((groups == g) & (labels == c)) for c in classes] for g in ids], float)
    total = counts.sum(0)
    target, scale = fraction * total, np.maximum(total, 1.0)
    if len(ids) <= _EXHAUSTIVE_GROUPS:
        masks = (np.arange(1, 2 ** len(ids) - 1)[:, None] >> np.arange(len(ids))) & 1  # not none, not all
        masks = masks[rng.permutation(len(masks))]
        valid = masks @ counts
        err = _error(valid, target, scale)
        both_sides = ((valid > 0) & (total - valid > 0)).all(1)
        if both_sides.any():
            err = np.where(both_sides, err, np.inf)
        chosen = masks[int(np.argmin(err))].astype(bool)
    else:
        chosen = np.zeros(len(ids), bool)
        current = np.zeros(len(classes))
        for k in rng.permutation(len(ids)):
            if chosen.sum() == len(ids) - 1:
                break  # keep at least one group for training
            if _error(current + counts[k], target, scale) < _error(current, target, scale):
                chosen[k] = True
                current += counts[k]
        if not chosen.any():
            chosen[rng.integers(len(ids))] = True  # at least one group for validation
    return np.flatnonzero(np.isin(groups, ids[chosen]))


def train_valid_split(
    patch_set: PatchSet, valid_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 ``(train_idx, valid_idx)``; deterministic given ``seed``.

    Stratified by label (unlabelled sets count as one class). With more than one group
    (e.g. slides), whole groups go to validation, chosen to approach ``valid_fraction``
    of every class; otherwise each class is split by ``valid_fraction`` (at least one patch
    per class on each side when the class has two or more).
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise PatchDataError(f"the validation fraction must be in [0, 1), got {valid_fraction}")
    n = len(patch_set)
    labels = np.zeros(n, np.int8) if patch_set.labels is None else np.asarray(patch_set.labels)
    groups = np.asarray(patch_set.groups)
    rng = np.random.default_rng(seed)
    if valid_fraction == 0 or n == 0:
        valid = np.zeros(0, np.int64)
    elif np.unique(groups).size > 1:
        valid = _by_group(labels, groups, valid_fraction, rng)
    else:
        valid = _stratified(labels, valid_fraction, rng)
    mask = np.zeros(n, bool)
    mask[valid] = True
    return np.flatnonzero(~mask).astype(np.int64), np.flatnonzero(mask).astype(np.int64)
