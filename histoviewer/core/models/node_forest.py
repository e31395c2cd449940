"""A random forest stored as arrays: the learned node classifier's file format.

A node classifier file is a ``.safetensors`` file that holds a fitted random forest as plain
arrays (never a pickle: loading runs no code from the file), one set per forest:

- ``children_left``, ``children_right`` (int32, every node of every tree, -1 at a leaf),
  ``feature`` (int32, -2 at a leaf, as scikit-learn writes it), ``threshold`` (float64),
  ``value`` (float64, nodes x classes: the (weighted) class fractions of the training
  samples that reached the node, summing to 1), all trees one after another;
- ``tree_offsets`` (int64, trees + 1): tree ``t`` owns nodes ``offsets[t] .. offsets[t+1]``,
  its child indices are relative to ``offsets[t]``.

The header's ``histoviewer.node_classifier`` entry is the description as JSON (format
``histoviewer-node-classifier/1``): classes, features with units, what it was trained on,
the scikit-learn version, and ``content_hash``: SHA-256 over the format, the canonical
description and the arrays (``tensors_hash``), required, so an edited file is refused.

``NodeForest.predict_proba`` walks the arrays with numpy and gives exactly scikit-learn's
``RandomForestClassifier.predict_proba`` (features compared as float32, as scikit-learn's
trees do; the leaves' fractions summed in tree order, then divided by the number of trees),
tested bit for bit equal.

Loading does not trust the file: a regular file of bounded size, its header's length and
JSON checked by us (``safe_input``) before safetensors reads it, the array types, shapes
and the trees' structure (children inside their tree and after their parent, so a walk
always ends; features inside the list; finite thresholds and values) checked before any
prediction. Every refusal is a ``ModelLoadError`` naming the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from histoviewer import __version__
from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.errors import ModelError, ModelLoadError
from histoviewer.core.models.model_file import tensors_hash
from histoviewer.core.safe_input import parse_json, require_regular_file

__all__ = [
    "FOREST_FORMAT",
    "MAX_FOREST_BYTES",
    "NodeForest",
    "forest_from_sklearn",
    "load_forest",
    "save_forest",
]

FOREST_FORMAT = "histoviewer-node-classifier/1"
_META_KEY = "histoviewer.node_classifier"
_FORMAT_KEY = "format"
# A forest of a few hundred trees of a few thousand nodes is a few MB; 64 MiB is far beyond ours.
MAX_FOREST_BYTES = 64 * 1024**2
_MAX_HEADER_BYTES = 1024**2
_MAX_TREES = 2000
_MAX_CLASSES = 16
_MAX_FEATURES = 1000
_ARRAYS = {
    "children_left": "I32",
    "children_right": "I32",
    "feature": "I32",
    "threshold": "F64",
    "value": "F64",
    "tree_offsets": "I64",
}
_DTYPE_BYTES = {"I32": 4, "I64": 8, "F64": 8}
_EDITED = "(file corrupted, or edited after it was written)"


@dataclass(frozen=True, eq=False)
class NodeForest:
    """A fitted forest (module docstring) and its description. ``classes``: the labels the
    columns of ``predict_proba`` stand for; ``features``: the feature names, in column order."""

    classes: tuple[str, ...]
    features: tuple[str, ...]
    children_left: np.ndarray = field(repr=False)
    children_right: np.ndarray = field(repr=False)
    feature: np.ndarray = field(repr=False)
    threshold: np.ndarray = field(repr=False)
    value: np.ndarray = field(repr=False)
    tree_offsets: np.ndarray = field(repr=False)
    description: Mapping[str, Any] = field(default_factory=dict)

    @property
    def trees(self) -> int:
        return len(self.tree_offsets) - 1

    @property
    def content_hash(self) -> str:
        return str(self.description.get("content_hash") or "")

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name)) for name in _ARRAYS}

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (samples x classes) of ``features`` (samples x features)."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(
                f"expected samples x {len(self.features)} features, got shape {x.shape}"
            )
        # scikit-learn's trees compare float32 features with float64 thresholds
        x = x.astype(np.float32).astype(np.float64)
        rows = np.arange(len(x))
        total = np.zeros((len(x), len(self.classes)), np.float64)
        for t in range(self.trees):
            start = int(self.tree_offsets[t])
            node = np.full(len(x), start, np.int64)
            while True:
                left = self.children_left[node]
                inner = left >= 0
                if not inner.any():
                    break
                at = node[inner]
                go_left = x[rows[inner], self.feature[at]] <= self.threshold[at]
                node[inner] = start + np.where(
                    go_left, self.children_left[at], self.children_right[at]
                )
            total += self.value[
                node
            ]  # the leaf's class fractions, as scikit-learn's trees answer
        return total / self.trees

    def predict(self, features: np.ndarray) -> list[str]:
        proba = self.predict_proba(features)
        return [self.classes[i] for i in np.argmax(proba, axis=1)]


def forest_from_sklearn(
    model: Any, features: Sequence[str], description: Mapping[str, Any]
) -> NodeForest:
    """The arrays of a fitted ``sklearn.ensemble.RandomForestClassifier`` (its ``classes_``
    become text labels)."""
    lefts, rights, feats, thresholds, values, offsets = [], [], [], [], [], [0]
    for est in model.estimators_:
        tree = est.tree_
        lefts.append(tree.children_left.astype(np.int32))
        rights.append(tree.children_right.astype(np.int32))
        feats.append(tree.feature.astype(np.int32))
        thresholds.append(tree.threshold.astype(np.float64))
        # single output; class fractions per node (scikit-learn >= 1.4 stores fractions)
        values.append(tree.value[:, 0, :].astype(np.float64))
        offsets.append(offsets[-1] + tree.node_count)
    value = np.concatenate(values)
    if np.any(
        np.abs(value.sum(axis=1) - 1.0) > 1e-6
    ):  # scikit-learn < 1.4 stored counts
        raise ModelError(
            "the node classifier needs scikit-learn 1.4 or later (its trees store class fractions)"
        )
    return NodeForest(
        classes=tuple(str(c) for c in model.classes_),
        features=tuple(features),
        children_left=np.concatenate(lefts),
        children_right=np.concatenate(rights),
        feature=np.concatenate(feats),
        threshold=np.concatenate(thresholds),
        value=value,
        tree_offsets=np.asarray(offsets, np.int64),
        description=dict(description),
    )


def _hash(description: Mapping[str, Any], arrays_digest: str) -> str:
    body = {k: v for k, v in description.items() if k != "content_hash"}
    canonical = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    digest = hashlib.sha256()
    for part in (FOREST_FORMAT, canonical, arrays_digest):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def save_forest(path: str | Path, forest: NodeForest) -> NodeForest:
    """Write ``forest`` atomically (its description completed with classes, features,
    versions and ``content_hash``); the forest as a reader will load it is returned."""
    tensors = forest.tensors()
    description = dict(forest.description)
    description.update(
        {
            "format": FOREST_FORMAT,
            "classes": list(forest.classes),
            "feature_names": list(forest.features),
            "trees": forest.trees,
        }
    )
    description.setdefault("software_version", __version__)
    description.setdefault(
        "created", _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )
    description = json.loads(
        json.dumps(description, allow_nan=False)
    )  # what a reader parses
    description["content_hash"] = _hash(description, tensors_hash(tensors))
    meta = {
        _FORMAT_KEY: FOREST_FORMAT,
        _META_KEY: json.dumps(description, sort_keys=True, allow_nan=False),
    }
    atomic_write_bytes(Path(path), save(tensors, metadata=meta))
    return NodeForest(
        **{**{k: getattr(forest, k) for k in ("classes", "features")}, **tensors},
        description=description,
    )


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    size = require_regular_file(path, "node classifier", ModelLoadError).st_size
    if size > MAX_FOREST_BYTES:
        raise ModelLoadError(
            f"{path}: {size:,} bytes is too large for a node classifier file; refused"
        )
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelLoadError(
                    f"{path}: truncated ({size} bytes), not a node classifier file"
                )
            (n_header,) = struct.unpack("<Q", head)
            if n_header == 0 or n_header > min(_MAX_HEADER_BYTES, size - 8):
                if head[:2] == b"PK" or head[:1] == b"\x80":
                    raise ModelLoadError(
                        f"{path}: looks like a pickle; HistoViewer never loads pickles "
                        "(they can run code): train the node classifier again"
                    )
                raise ModelLoadError(
                    f"{path}: not a node classifier file (bad or truncated safetensors header)"
                )
            raw = fh.read(n_header)
    except OSError as exc:
        raise ModelLoadError(
            f"{path}: cannot read node classifier: {exc.strerror}"
        ) from exc
    header = parse_json(
        raw,
        path,
        "the node classifier's header",
        ModelLoadError,
        max_bytes=_MAX_HEADER_BYTES,
    )
    if not isinstance(header, dict):
        raise ModelLoadError(
            f"{path}: not a node classifier file (header is not a map)"
        )
    return header, size - 8 - n_header


def _check_entries(path: Path, header: dict[str, Any], data_bytes: int) -> None:
    names = {k for k in header if k != "__metadata__"}
    if names != set(_ARRAYS):
        raise ModelLoadError(
            f"{path}: not a node classifier file: arrays {sorted(names)}, "
            f"expected {sorted(_ARRAYS)}"
        )
    for name, dtype in _ARRAYS.items():
        entry = header[name]
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or entry.get("dtype") != dtype
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and 0 <= o <= data_bytes for o in offsets)
            or offsets[0] > offsets[1]
            or not isinstance(shape, list)
            or len(shape) not in (1, 2)
            or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            )
            or int(np.prod(shape)) * _DTYPE_BYTES[dtype] != offsets[1] - offsets[0]
        ):
            raise ModelLoadError(
                f"{path}: array {name!r} is malformed (type, shape or place in the file) {_EDITED}"
            )


def _check_structure(path: Path, forest: NodeForest) -> None:
    """Shapes agree; each tree's children lie inside it and after their parent (a walk ends);
    leaves are leaves in both children; features index the list; numbers are finite."""
    n_nodes, n_classes, n_features = (
        len(forest.children_left),
        len(forest.classes),
        len(forest.features),
    )
    bad = None
    off = forest.tree_offsets
    if forest.value.ndim != 2 or forest.value.shape != (n_nodes, n_classes):
        bad = f"class values of shape {forest.value.shape}, expected ({n_nodes}, {n_classes})"
    elif any(
        len(getattr(forest, k)) != n_nodes
        for k in ("children_right", "feature", "threshold")
    ):
        bad = "the node arrays differ in length"
    elif (
        not (1 <= len(off) - 1 <= _MAX_TREES)
        or off[0] != 0
        or off[-1] != n_nodes
        or np.any(np.diff(off) < 1)
    ):
        bad = "the tree offsets do not split the nodes into trees"
    elif not (
        np.all(np.isfinite(forest.threshold))
        and np.all(np.isfinite(forest.value))
        and np.all(forest.value >= 0)
    ):
        bad = "non-finite thresholds or negative / non-finite class values"
    elif np.any(np.abs(forest.value.sum(axis=1) - 1.0) > 1e-6):
        bad = "class values that are not fractions summing to 1"
    else:
        index = np.arange(n_nodes) - np.repeat(
            off[:-1], np.diff(off)
        )  # node index inside its tree
        size = np.repeat(np.diff(off), np.diff(off))
        left, right = (
            forest.children_left.astype(np.int64),
            forest.children_right.astype(np.int64),
        )
        leaf = left == -1
        if np.any(leaf != (right == -1)):
            bad = "a node with one child"
        elif np.any(
            ~leaf
            & ((left <= index) | (right <= index) | (left >= size) | (right >= size))
        ):
            bad = "a child outside its tree or before its parent"
        elif np.any(~leaf & ((forest.feature < 0) | (forest.feature >= n_features))):
            bad = "a split on a feature outside the feature list"
    if bad:
        raise ModelLoadError(f"{path}: not a usable node classifier: {bad} {_EDITED}")


def load_forest(path: str | Path) -> NodeForest:
    """Read and check a node classifier file (module docstring); ``ModelLoadError`` naming
    the file and the problem when it cannot be used."""
    p = Path(path)
    header, data_bytes = _read_header(p)
    meta = header.get("__metadata__")
    if (
        not isinstance(meta, dict)
        or meta.get(_FORMAT_KEY) != FOREST_FORMAT
        or _META_KEY not in meta
    ):
        fmt = meta.get(_FORMAT_KEY) if isinstance(meta, dict) else None
        if fmt and str(fmt).startswith("histoviewer-model"):
            raise ModelLoadError(
                f"{p}: is a patch classifier (model file), not a node classifier"
            )
        raise ModelLoadError(
            f"{p}: not a HistoViewer node classifier file (format {fmt!r}, "
            f"expected {FOREST_FORMAT})"
        )
    _check_entries(p, header, data_bytes)
    if not isinstance(meta[_META_KEY], str):
        raise ModelLoadError(f"{p}: the node classifier's description must be text")
    description = parse_json(
        meta[_META_KEY], p, "the node classifier's description", ModelLoadError
    )
    if not isinstance(description, dict):
        raise ModelLoadError(
            f"{p}: the node classifier's description must be a JSON object"
        )
    classes, features = description.get("classes"), description.get("feature_names")
    if (
        not isinstance(classes, list)
        or not 2 <= len(classes) <= _MAX_CLASSES
        or not all(isinstance(c, str) and c for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise ModelLoadError(
            f"{p}: the description's 'classes' must be 2-{_MAX_CLASSES} distinct names"
        )
    if (
        not isinstance(features, list)
        or not 1 <= len(features) <= _MAX_FEATURES
        or not all(isinstance(f, str) and f for f in features)
    ):
        raise ModelLoadError(
            f"{p}: the description's 'feature_names' must be a list of names"
        )
    try:
        arrays = load(p.read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{p}: cannot read the node classifier's arrays: {exc}"
        ) from exc
    stated = description.get("content_hash")
    if not isinstance(stated, str) or stated != _hash(
        description, tensors_hash(arrays)
    ):
        raise ModelLoadError(
            f"{p}: its content hash does not match its description and arrays {_EDITED}; refused"
        )
    forest = NodeForest(
        classes=tuple(classes),
        features=tuple(features),
        description=description,
        **{k: arrays[k] for k in _ARRAYS},
    )
    _check_structure(p, forest)
    return forest
