"""Training the learned node classifier: examples from analysed slides, a random forest.

An *example* is one node: its map's ``node_features`` and its true label. Examples come
from analysed slides (``analyze`` folders: ``summary.json`` and ``probability.tiff``) whose
labels are known, either from a CAMELYON17 label CSV (``camelyon17.read_node_labels``) or,
for phantom slides, from the ground truth written beside the slide
(``<slide>.lesions.json``); synthesised phantom maps give examples too
(``phantom.node_cohort``). A slide whose rule-based label is not final (failed or
unclassified tissue, out of domain) is skipped with the reason: its map is not one the
classifier will ever be asked about.

The forest is scikit-learn's ``RandomForestClassifier`` (balanced class weights: negative
nodes outnumber ITC nodes), stored as arrays (``models.node_forest``), never pickled.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histoviewer.core.analysis.camelyon17 import (
    case_of,
    node_identity,
    read_node_labels,
)
from histoviewer.core.analysis.lesions import MapFrame
from histoviewer.core.analysis.map_io import read_probability_map
from histoviewer.core.analysis.node_features import (
    FEATURE_NAMES,
    FEATURES,
    node_features,
)
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.summary import SlideFailure, read_summary
from histoviewer.core.errors import ModelError
from histoviewer.core.models.node_forest import NodeForest, forest_from_sklearn
from histoviewer.core.safe_input import read_json
from histoviewer.core.staging_terms import NodeLabel

__all__ = ["NodeExample", "examples_from_analyses", "find_analyses", "fit_node_forest"]

MIN_EXAMPLES = 10


@dataclass(frozen=True, eq=False)
class NodeExample:
    """One node with a known label: ``source`` names it (a folder, or a phantom case),
    ``patient`` groups nodes into patients (for held-out splits and pN)."""

    source: str
    patient: str
    label: NodeLabel
    features: np.ndarray


def find_analyses(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Analysis folders (holding ``summary.json``): each path is one, or an ``analyze`` output
    folder whose subfolders are."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / "summary.json").is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(d for d in p.iterdir() if (d / "summary.json").is_file())
        else:
            raise ModelError(
                f"{p}: not an analysis folder (no summary.json in it or its subfolders)"
            )
    return found


def _phantom_truth(slide: Path) -> NodeLabel | None:
    """The label in the phantom ground truth beside ``slide`` (``<stem>.lesions.json``)."""
    truth = slide.with_name(slide.with_suffix("").name + ".lesions.json")
    if not truth.is_file():
        return None
    doc = read_json(truth, "phantom ground truth", ModelError)
    return (
        NodeLabel.parse(str(doc["node_label"]))
        if isinstance(doc, dict) and "node_label" in doc
        else None
    )


def examples_from_analyses(
    folders: Sequence[Path],
    labels_csv: str | os.PathLike[str] | None = None,
    skipped: Callable[[str], None] | None = None,
) -> list[NodeExample]:
    """One example per analysed slide of ``folders``; labels from ``labels_csv`` (node rows of
    a CAMELYON17 CSV) or else the phantom truth beside each slide. A slide without a label,
    or whose label is not final, is reported through ``skipped`` and left out."""
    by_node: dict[Any, NodeLabel] = {}
    if labels_csv is not None:
        for nodes in read_node_labels(labels_csv).values():
            for n in nodes:
                by_node[node_identity(n.node)] = n.label
    out = []
    for folder in folders:
        summary = read_summary(folder, lesions_required=True)
        if isinstance(summary, SlideFailure):
            (skipped or print)(f"{folder}: analysis failed, skipped ({summary.error})")
            continue
        if summary.unknown_reason is not None:
            (skipped or print)(
                f"{folder}: label not final, skipped ({summary.unknown_reason})"
            )
            continue
        slide = Path(summary.slide)
        label = (
            by_node.get(node_identity(slide.name))
            if labels_csv is not None
            else _phantom_truth(slide)
        )
        if label is None or label is NodeLabel.UNKNOWN:
            (skipped or print)(f"{folder}: no known label for {slide.name}, skipped")
            continue
        encoded, _geometry = read_probability_map(Path(summary.files.probability_tiff))
        found = analyse_map(
            encoded, MapFrame.from_geometry(summary.geometry), summary.lesion_params
        )
        patient = case_of(slide)[0]
        out.append(
            NodeExample(str(folder), str(patient), label, node_features(encoded, found))
        )
    return out


def fit_node_forest(
    examples: Sequence[NodeExample],
    *,
    trees: int = 200,
    seed: int = 0,
    name: str,
    caution: str,
    trained_on: Mapping[str, Any],
) -> tuple[NodeForest, float | None]:
    """A forest over ``examples`` and its out-of-bag accuracy (None when undefined). The
    description names the features (with units), the training data (``trained_on`` plus
    counts per class) and the scikit-learn version."""
    # Lazy: scikit-learn takes ~0.5 s to import, and only training needs it.
    import sklearn
    from sklearn.ensemble import RandomForestClassifier

    if len(examples) < MIN_EXAMPLES:
        raise ModelError(
            f"{len(examples)} labelled nodes are too few to train a node classifier "
            f"(at least {MIN_EXAMPLES})"
        )
    labels = [e.label.value for e in examples]
    if len(set(labels)) < 2:
        raise ModelError(
            f"every training node is {labels[0]}: a classifier needs at least two labels"
        )
    x = np.stack([e.features for e in examples])
    model = RandomForestClassifier(
        n_estimators=trees,
        min_samples_leaf=2,
        class_weight="balanced",
        oob_score=trees >= 50,  # fewer trees leave samples without an out-of-bag vote
        random_state=seed,
        n_jobs=1,
    )
    try:
        model.fit(x, labels)
    except ValueError as exc:
        raise ModelError(f"the node classifier could not be trained: {exc}") from exc
    oob = getattr(model, "oob_score_", None)
    description = {
        "name": name,
        "kind": "random forest (scikit-learn RandomForestClassifier, stored as arrays)",
        "caution": caution,
        "features": [f.to_dict() for f in FEATURES],
        "trained_on": {
            **trained_on,
            "nodes": len(examples),
            "patients": len({e.patient for e in examples}),
            "per_class": dict(sorted(Counter(labels).items())),
        },
        "hyperparameters": {
            "n_estimators": trees,
            "min_samples_leaf": 2,
            "class_weight": "balanced",
            "random_state": seed,
        },
        "oob_accuracy": None if oob is None else round(float(oob), 6),
        "sklearn_version": sklearn.__version__,
        # what the training maps spanned: a map far outside (another cell size) gets no label
        "feature_ranges": {
            name: [round(float(x[:, i].min()), 6), round(float(x[:, i].max()), 6)]
            for i, name in enumerate(FEATURE_NAMES)
        },
    }
    return forest_from_sklearn(model, FEATURE_NAMES, description), (
        None if oob is None else float(oob)
    )
