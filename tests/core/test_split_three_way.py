"""The train / valid / test split, several sources, and finding a model's parts again."""

from __future__ import annotations

import numpy as np
import pytest

from histoviewer.core.errors import PatchDataError
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.patches.concat import ConcatPatchSet
from histoviewer.core.patches.split import (
    SplitRule,
    ids_sha256,
    select_part,
    three_way_split,
)
from histoviewer.core.training import TrainConfig, _split, training_caveat

from .model_helpers import ArrayPatchSet

SPEC = InputSpec()


def _table(labels, groups=None, description="toy patches"):
    labels = np.asarray(labels, np.int8)
    patches = np.zeros((len(labels), 96, 96, 3), np.uint8)
    g = None if groups is None else np.asarray(groups, np.int32)
    return ArrayPatchSet(patches, labels, SPEC, groups=g, description=description)


def test_three_way_split_is_stratified_disjoint_and_deterministic():
    table = _table([0] * 560 + [1] * 440)
    cut = three_way_split(table, 0.15, 0.15, seed=0)
    parts = [cut.train, cut.valid, cut.test]
    assert sum(len(p) for p in parts) == 1000
    assert len(set(np.concatenate(parts).tolist())) == 1000  # disjoint and complete
    assert all(np.all(np.diff(p) > 0) for p in parts)  # sorted
    # stratified: every part has the set's 44 % tumour; the test part is never under 15 %
    for p in parts:
        assert table.labels[p].mean() == pytest.approx(0.44, abs=0.01)
    assert len(cut.test) >= 150 and len(cut.valid) == pytest.approx(150, abs=2)
    again = three_way_split(table, 0.15, 0.15, seed=0)
    for a, b in zip(parts, [again.train, again.valid, again.test], strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.rule == cut.rule
    other = three_way_split(table, 0.15, 0.15, seed=1)
    assert not np.array_equal(other.test, cut.test)
    assert cut.rule.test_ids_sha256 == ids_sha256([table.ids[i] for i in cut.test])
    assert cut.rule.tumour == tuple(int(table.labels[p].sum()) for p in parts)
    assert SplitRule.from_dict(cut.rule.to_dict()) == cut.rule
    with pytest.raises(PatchDataError, match="fractions"):
        three_way_split(table, 0.5, 0.5)


def test_three_way_split_keeps_whole_slides_together():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(12), 30)
    labels = (rng.random(groups.size) < np.repeat(rng.random(12), 30)).astype(np.int8)
    table = _table(labels, groups)
    cut = three_way_split(table, 0.2, 0.2, seed=3)
    sets = [set(groups[p].tolist()) for p in (cut.train, cut.valid, cut.test)]
    assert all(sets) and not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert cut.rule.grouped
    for p in (cut.valid, cut.test):
        assert 0 < labels[p].sum() < len(p)  # both classes where the slides allow
    with pytest.raises(PatchDataError, match="2 slides"):
        three_way_split(_table([0, 1, 0, 1], [0, 0, 1, 1]), 0.2, 0.2)


def test_concatenated_sources_keep_groups_and_ids_apart():
    a = _table([0, 1] * 50, description="real")
    b = _table([1, 0, 0] * 10, np.repeat([0, 1, 2], 10), description="phantom")
    both = ConcatPatchSet([a, b])
    assert len(both) == 130 and both.labels.tolist() == a.labels.tolist() + b.labels.tolist()
    assert set(both.groups[:100].tolist()) == {0} and set(both.groups[100:].tolist()) == {1, 2, 3}
    assert len(set(both.ids)) == 130
    np.testing.assert_array_equal(both.read([101, 3]), np.zeros((2, 96, 96, 3), np.uint8))


def test_validation_and_test_come_from_the_chosen_source_only():
    real = _table([0] * 120 + [1] * 80, description="real")
    phantom = _table([0, 0, 1] * 20, np.repeat([0, 1, 2, 3], 15), description="phantom")
    both = ConcatPatchSet([real, phantom])
    sp = _split(both, None, TrainConfig(valid_from=(0,)), lambda _m: None)
    assert np.all(sp.valid_idx < 200) and np.all(sp.test_idx < 200)
    assert set(range(200, 260)) <= set(sp.train_idx.tolist())
    assert len(sp.train_idx) + len(sp.valid_idx) + len(sp.test_idx) == 260
    real_rec, phantom_rec = sp.sources
    assert real_rec["role"] == "train, validation and test" and phantom_rec["role"] == "training only"
    assert real_rec["n_train"] + phantom_rec["n_train"] == len(sp.train_idx)
    # the split of a source is the split of that source alone: an evaluation can cut it again
    alone = three_way_split(real, 0.15, 0.15, seed=0)
    np.testing.assert_array_equal(sp.test_idx, alone.test)
    assert real_rec["split"]["test_ids_sha256"] == alone.rule.test_ids_sha256
    # a new training seed keeps the same test part; a new split seed does not
    np.testing.assert_array_equal(_split(both, None, TrainConfig(valid_from=(0,), seed=5),
                                         lambda _m: None).test_idx, sp.test_idx)
    assert not np.array_equal(_split(both, None, TrainConfig(valid_from=(0,), split_seed=5),
                                     lambda _m: None).test_idx, sp.test_idx)
    with pytest.raises(PatchDataError, match="sources"):
        _split(both, None, TrainConfig(valid_from=(2,)), lambda _m: None)


def test_select_part_finds_the_parts_again_and_says_what_training_saw():
    real = _table([0] * 120 + [1] * 80, description="real")
    sp = _split(real, None, TrainConfig(), lambda _m: None)
    sources = list(sp.sources)
    test = select_part(real, sources, "test")
    np.testing.assert_array_equal(test.indices, sp.test_idx)
    assert test.seen_by_training == 0 and "verified" in test.note
    everything = select_part(real, sources, "all")
    assert everything.seen_by_training == len(sp.train_idx) + len(sp.valid_idx)
    assert "trained" in everything.note
    valid = select_part(real, sources, "valid")
    np.testing.assert_array_equal(valid.indices, sp.valid_idx)
    stranger = _table([0, 1] * 30)
    assert select_part(stranger, sources, "all").seen_by_training == 0
    with pytest.raises(PatchDataError, match="not one of the model's training sources"):
        select_part(stranger, sources, "test")
    relabelled = _table([1] * 120 + [0] * 80)  # same ids, other labels: another cut
    relabelled.ids = real.ids
    with pytest.raises(PatchDataError, match="another test part"):
        select_part(relabelled, sources, "test")


def test_caveat_names_what_the_model_was_trained_on():
    sources = [{"kind": "real PatchCamelyon", "n_train": 6657}, {"kind": "synthetic phantom", "n_train": 1800},
               {"kind": "real PatchCamelyon", "n_train": 0}]
    assert training_caveat(sources) == ("research model trained on 6,657 real PatchCamelyon patches and "
                                        "1,800 synthetic phantom patches; not validated for clinical use")
    assert training_caveat([{"kind": "", "n_train": 140}]) == (
        "research model trained on 140 labelled patches; not validated for clinical use")
