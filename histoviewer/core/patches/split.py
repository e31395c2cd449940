"""Train/validation(/test) splits: stratified by label, whole groups (slides) kept together."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from histoviewer.core.errors import PatchDataError
from histoviewer.core.patches.base import PatchSet

__all__ = [
    "DEFAULT_SPLIT_SEED",
    "DEFAULT_TEST_FRACTION",
    "DEFAULT_VALID_FRACTION",
    "PARTS",
    "PartSelection",
    "SplitParts",
    "SplitRule",
    "ids_sha256",
    "select_part",
    "three_way_split",
    "train_valid_split",
]


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


# -- three-way split (train / valid / test) for labelled sets that have no split of their own --

DEFAULT_VALID_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.15
DEFAULT_SPLIT_SEED = 0
PARTS = ("train", "valid", "test")


def ids_sha256(ids: Sequence[str]) -> str:
    """SHA-256 (hex) of the sorted ids, one per line: names a set of patches whatever its order."""
    h = hashlib.sha256()
    for pid in sorted(str(i) for i in ids):
        h.update(pid.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class SplitRule:
    """How ``three_way_split`` cut a patch set: enough to cut it again identically.

    ``test_ids_sha256`` names the test part (``ids_sha256`` of its ids) so an evaluation can
    check that the patches it is given as "test" are the ones training never saw.
    """

    seed: int
    valid_fraction: float
    test_fraction: float
    n_train: int = 0
    n_valid: int = 0
    n_test: int = 0
    tumour: tuple[int, int, int] = (0, 0, 0)  # tumour patches in train, valid, test
    grouped: bool = False  # whole groups (slides) kept together
    test_ids_sha256: str = ""

    def describe(self) -> str:
        how = "whole slides kept together" if self.grouped else "stratified by label"
        return (f"{self.n_train} train / {self.n_valid} valid / {self.n_test} test "
                f"({how}, seed {self.seed})")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tumour"] = list(self.tumour)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SplitRule:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["tumour"] = tuple(int(v) for v in known.get("tumour", (0, 0, 0)))
        return cls(**known)


@dataclass(frozen=True)
class SplitParts:
    """Sorted, disjoint int64 indices of the three parts, and the rule that made them."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    rule: SplitRule

    def part(self, name: str) -> np.ndarray:
        if name not in PARTS:
            raise PatchDataError(f"unknown part {name!r}; use one of {', '.join(PARTS)}", setting="part")
        return {"train": self.train, "valid": self.valid, "test": self.test}[name]


def _stratified_two(labels: np.ndarray, f_test: float, f_valid: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per class: the first ceil(f_test * n) of a permutation to test (never fewer than the
    fraction asked), the next round(f_valid * n) to valid; at least one of each class in
    each part when the class has three or more patches."""
    test, valid = [], []
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        n = members.size
        k_test = int(np.ceil(f_test * n - 1e-9))
        k_valid = round(f_valid * n)
        if n >= 3:
            k_test = min(max(k_test, 1), n - 2)
            k_valid = min(max(k_valid, 1), n - 1 - k_test)
        test.append(members[:k_test])
        valid.append(members[k_test : k_test + k_valid])
    return np.concatenate(test), np.concatenate(valid)


def three_way_split(
    patch_set: PatchSet,
    valid_fraction: float = DEFAULT_VALID_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> SplitParts:
    """Cut a labelled patch set into train / valid / test, deterministically given ``seed``.

    Stratified by label. With several groups (slides), whole groups go to a part: first the
    test groups (approaching ``test_fraction`` of every class), then the valid groups among the
    rest; at least three groups are needed. Without groups, each class is cut by the fractions
    (test rounded up, so the test part is never smaller than asked). The test part is meant
    never to be used for training or model selection; the valid part for early stopping,
    calibration and the operating point.
    """
    if not (0.0 < test_fraction < 1.0 and 0.0 < valid_fraction < 1.0
            and valid_fraction + test_fraction < 1.0):
        raise PatchDataError(
            f"the validation and test fractions must be in (0, 1) with a sum below 1, got "
            f"{valid_fraction} and {test_fraction}", setting="valid_fraction")
    n = len(patch_set)
    if patch_set.labels is None:
        raise PatchDataError(f"{patch_set.description}: a train/valid/test split needs labelled patches")
    labels = np.asarray(patch_set.labels).astype(np.int64)
    groups = np.asarray(patch_set.groups)
    rng = np.random.default_rng(seed)
    grouped = np.unique(groups).size > 1
    if grouped:
        ids = np.unique(groups)
        if ids.size < 3:
            raise PatchDataError(
                f"{patch_set.description}: {ids.size} slides cannot be cut into train, validation "
                "and test with whole slides kept together; add slides or give a separate validation set",
                setting="valid_fraction")
        test = _by_group(labels, groups, test_fraction, rng)
        rest = np.setdiff1d(np.arange(n), test)
        valid_rel = _by_group(labels[rest], groups[rest], valid_fraction / (1.0 - test_fraction), rng)
        valid = rest[valid_rel]
    else:
        test, valid = _stratified_two(labels, test_fraction, valid_fraction, rng)
    part = np.zeros(n, np.int8)  # 0 train, 1 valid, 2 test
    part[valid] = 1
    part[test] = 2
    train_idx, valid_idx, test_idx = (np.flatnonzero(part == k).astype(np.int64) for k in range(3))
    all_ids = list(patch_set.ids)
    rule = SplitRule(
        seed=int(seed), valid_fraction=float(valid_fraction), test_fraction=float(test_fraction),
        n_train=int(train_idx.size), n_valid=int(valid_idx.size), n_test=int(test_idx.size),
        tumour=tuple(int(labels[i].sum()) for i in (train_idx, valid_idx, test_idx)),
        grouped=bool(grouped), test_ids_sha256=ids_sha256([all_ids[i] for i in test_idx]),
    )
    return SplitParts(train_idx, valid_idx, test_idx, rule)


@dataclass(frozen=True)
class PartSelection:
    """The patches of a set to evaluate, and what a model's training record says about them.

    ``source``: the model's record of this set (matched by ``ids_sha256``), None when the set is
    not one the model trained on. ``seen_by_training``: how many of the selected patches the
    model trained on or was selected/calibrated with (train + valid parts); ``note``: one
    sentence saying so.
    """

    indices: np.ndarray
    part: str
    source: dict[str, Any] | None
    seen_by_training: int
    note: str


def select_part(patch_set: PatchSet, sources: Sequence[dict[str, Any]], part: str = "all") -> PartSelection:
    """Patches of ``patch_set`` in ``part`` ("all" or one of ``PARTS``) of the cut a model's
    training recorded for it (``ModelInfo.extra["sources"]``), the test part checked against
    the recorded hash of its ids."""
    n = len(patch_set)
    match = next((s for s in sources if s.get("ids_sha256") == ids_sha256(patch_set.ids)), None)
    if part == "all":
        if match is None:
            note = ("these patches are not one of the model's training sources" if sources
                    else "the model records no training sources; overlap with its training data is unknown")
            return PartSelection(np.arange(n, dtype=np.int64), part, None, 0, note)
        seen = int(match.get("n_train", 0)) + int(match.get("n_valid", 0))
        return PartSelection(np.arange(n, dtype=np.int64), part, match, seen,
                             f"{seen} of these {n} patches trained, selected or calibrated the model "
                             f"({match.get('role', '')}); evaluate its held-out test part instead")
    if part not in PARTS:
        raise PatchDataError(f"unknown part {part!r}; use all or one of {', '.join(PARTS)}", setting="part")
    if match is None or not match.get("split"):
        why = ("it is not one of the model's training sources (no id hash matches)" if match is None
               else "the model did not cut this source into parts")
        raise PatchDataError(f"{patch_set.description}: cannot select the {part} part: {why}", setting="part")
    rule = SplitRule.from_dict(match["split"])
    cut = three_way_split(patch_set, rule.valid_fraction, rule.test_fraction, rule.seed)
    if cut.rule.test_ids_sha256 != rule.test_ids_sha256:
        raise PatchDataError(f"{patch_set.description}: re-cutting with the model's rule gives another "
                             "test part than the one recorded (different labels or groups?)", setting="part")
    idx = cut.part(part)
    seen = 0 if part == "test" else int(idx.size)
    note = ("held-out test part: never read in training (test ids hash verified)" if part == "test"
            else f"the model's {part} part: {'trained' if part == 'train' else 'selected and calibrated'} the model")
    return PartSelection(idx, part, match, seen, note)
