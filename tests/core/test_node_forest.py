"""The node classifier file: a random forest as arrays, exactly scikit-learn's answers, and
refused (naming the file) when it is not one of ours, edited, truncated or built to loop."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from safetensors.numpy import save
from sklearn.ensemble import RandomForestClassifier

from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models import node_forest
from histoviewer.core.models.node_forest import (
    NodeForest,
    forest_from_sklearn,
    load_forest,
    save_forest,
)


def _fitted(
    seed: int = 0, trees: int = 30, classes=("negative", "itc", "micro", "macro")
):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 6))
    # labels from thresholds on two features, with label noise: deep, uneven trees
    idx = (
        (x[:, 0] > 0).astype(int)
        + (x[:, 1] > 0.8).astype(int)
        + (x[:, 2] > 1.5).astype(int)
    )
    idx = np.where(rng.random(400) < 0.1, rng.integers(0, len(classes), 400), idx)
    y = np.array(classes)[np.minimum(idx, len(classes) - 1)]
    model = RandomForestClassifier(
        n_estimators=trees,
        random_state=seed,
        min_samples_leaf=2,
        class_weight="balanced",
    ).fit(x, y)
    return model, [f"f{i}" for i in range(6)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_traversal_gives_exactly_sklearns_probabilities(seed):
    model, names = _fitted(seed)
    forest = forest_from_sklearn(model, names, {"name": "t"})
    rng = np.random.default_rng(100 + seed)
    x = rng.normal(size=(500, 6)) * 1.5
    # values exactly on thresholds and values that round differently in float32: the edge cases
    x[:50, 0] = forest.threshold[forest.children_left >= 0][:50]
    x[50:60] = 0.1 + 1e-9
    assert np.array_equal(forest.predict_proba(x), model.predict_proba(x))
    assert forest.predict(x) == list(model.predict(x))


def test_save_and_load_round_trip_keeps_answers_and_description(tmp_path):
    model, names = _fitted()
    saved = save_forest(
        tmp_path / "f.safetensors",
        forest_from_sklearn(model, names, {"name": "t", "caution": "c"}),
    )
    loaded = load_forest(tmp_path / "f.safetensors")
    x = np.random.default_rng(5).normal(size=(100, 6))
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert (
        loaded.description["content_hash"] == saved.content_hash
        and len(saved.content_hash) == 64
    )
    assert loaded.description["format"] == node_forest.FOREST_FORMAT
    assert loaded.classes == tuple(model.classes_) and loaded.features == tuple(names)
    # the file holds no pickle: only safetensors arrays and JSON text
    raw = (tmp_path / "f.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    assert set(header) - {"__metadata__"} == set(node_forest._ARRAYS)


def _rewrite(path, tensors=None, description=None, rehash=True):
    """Write ``path`` again with changed arrays / description, the hash recomputed (an
    attacker who knows the format) unless ``rehash`` is False."""
    forest = load_forest(path)
    tensors = tensors if tensors is not None else forest.tensors()
    desc = dict(description if description is not None else forest.description)
    if rehash:
        desc["content_hash"] = node_forest._hash(
            desc, node_forest.tensors_hash(tensors)
        )
    meta = {
        "format": node_forest.FOREST_FORMAT,
        node_forest._META_KEY: json.dumps(desc),
    }
    path.write_bytes(save(tensors, metadata=meta))


@pytest.fixture
def forest_file(tmp_path):
    model, names = _fitted()
    path = tmp_path / "forest.safetensors"
    save_forest(path, forest_from_sklearn(model, names, {"name": "t"}))
    return path


def test_an_edited_header_or_array_is_refused(forest_file):
    forest = load_forest(forest_file)
    desc = dict(forest.description, caution="validated for clinical use")
    _rewrite(forest_file, description=desc, rehash=False)
    with pytest.raises(
        ModelLoadError, match=r"forest\.safetensors: .*content hash does not match"
    ):
        load_forest(forest_file)


def test_an_edited_threshold_is_refused(forest_file):
    forest = load_forest(forest_file)
    tensors = forest.tensors()
    tensors["threshold"] = tensors["threshold"] + 0.5
    _rewrite(forest_file, tensors=tensors, rehash=False)
    with pytest.raises(ModelLoadError, match="content hash does not match"):
        load_forest(forest_file)


@pytest.mark.parametrize(
    "attack, message",
    [
        ("cycle", "child outside its tree or before its parent"),
        ("feature", "feature outside the feature list"),
        ("one_child", "a node with one child"),
        ("offsets", "tree offsets"),
        ("nan", "non-finite"),
        ("value_shape", "class values of shape"),
    ],
)
def test_a_forest_built_to_loop_or_overrun_is_refused_even_with_a_valid_hash(
    forest_file, attack, message
):
    forest = load_forest(forest_file)
    t = forest.tensors()
    inner = int(np.flatnonzero(t["children_left"] >= 0)[3])
    if attack == "cycle":
        t["children_left"][inner] = 0  # back to the root: a walk would never end
    elif attack == "feature":
        t["feature"][inner] = 99
    elif attack == "one_child":
        t["children_right"][inner] = -1
    elif attack == "offsets":
        t["tree_offsets"][-1] += 5
    elif attack == "nan":
        t["threshold"][inner] = np.nan
    elif attack == "value_shape":
        t["value"] = t["value"][:, :2].copy()
    _rewrite(forest_file, tensors=t)
    with pytest.raises(ModelLoadError, match=rf"forest\.safetensors: .*{message}"):
        load_forest(forest_file)


def test_not_a_node_classifier_is_refused_with_the_file_named(tmp_path):
    pickle_file = tmp_path / "forest.pkl"
    pickle_file.write_bytes(b"\x80\x04\x95" + b"\0" * 100)
    with pytest.raises(ModelLoadError, match=r"forest\.pkl: looks like a pickle"):
        load_forest(pickle_file)
    short = tmp_path / "short.safetensors"
    short.write_bytes(b"\x01\x02")
    with pytest.raises(ModelLoadError, match=r"short\.safetensors: truncated"):
        load_forest(short)
    with pytest.raises(ModelLoadError, match=r"missing\.safetensors: .*not found"):
        load_forest(tmp_path / "missing.safetensors")
    with pytest.raises(ModelLoadError, match="not a regular file"):
        load_forest(tmp_path)
    other = tmp_path / "other.safetensors"
    other.write_bytes(
        save({"w": np.zeros(3, np.float32)}, metadata={"format": "histoviewer-model/2"})
    )
    with pytest.raises(ModelLoadError, match="is a patch classifier"):
        load_forest(other)
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(save({"w": np.zeros(3, np.float32)}))
    with pytest.raises(ModelLoadError, match="not a HistoViewer node classifier"):
        load_forest(wrong)


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as fh:
        fh.truncate(node_forest.MAX_FOREST_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ModelLoadError, match=r"big\.safetensors: .*too large"):
        load_forest(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ModelLoadError, match="named pipe"):
        load_forest(fifo)


def test_predict_checks_the_feature_count():
    model, names = _fitted()
    forest: NodeForest = forest_from_sklearn(model, names, {})
    with pytest.raises(ValueError, match="6 features"):
        forest.predict_proba(np.zeros((2, 5)))


def test_the_shipped_forest_keeps_its_caution_even_with_a_recomputed_hash(tmp_path):
    from histoviewer.core.analysis.learned_label import (
        default_node_classifier_path,
        load_node_classifier,
    )

    shipped = load_forest(default_node_classifier_path())
    copy = tmp_path / "relabelled.safetensors"
    copy.write_bytes(default_node_classifier_path().read_bytes())
    _rewrite(
        copy,
        description=dict(shipped.description, caution="trained on 10,000 real nodes"),
    )
    load_forest(copy)  # a well-formed file with a valid hash...
    with pytest.raises(
        ModelLoadError,
        match=r"relabelled\.safetensors: holds the trees of HistoViewer's shipped",
    ):
        load_node_classifier(
            copy
        )  # ...that may not present the phantom-trained trees as more
