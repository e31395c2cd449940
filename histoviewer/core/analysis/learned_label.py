"""The learned node classifier's label, shown beside the rule-based one.

The rule-based label (``node_label``: the size class of the largest lesion) is the node's
label: it decides the pN stage. A learned classifier (a random forest over the map's
``node_features``, ``models/node_forest``) gives a second opinion; where the two differ the
node is flagged for the pathologist. The honesty rules are the rules' own: when the node's
label is not final (``resolve_node_label``: no scale, failed or unclassified tissue, tissue
unlike the model's training data) the learned classifier gives no label either, only the
reason (``LearnedLabel.reason``).

The classifier shipped in ``resources/models/`` (``DEFAULT_NODE_CLASSIFIER``) is trained on
synthesised maps of phantom nodes only (its header says so; ``caution``): every place that
shows its label says so too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histoviewer.core.analysis.node_features import FEATURE_NAMES, node_features
from histoviewer.core.analysis.node_label import NodeResolution, SlideLesions
from histoviewer.core.errors import ModelLoadError
from histoviewer.core.models.model_file import tensors_hash
from histoviewer.core.models.node_forest import NodeForest, load_forest
from histoviewer.core.paths import bundled_resources_dir
from histoviewer.core.staging_terms import NodeLabel

if TYPE_CHECKING:  # summary imports this module for ``LearnedLabel``
    from histoviewer.core.analysis.summary import SlideSummary

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_NODE_CLASSIFIER",
    "LEARNED_CLASSES",
    "SHIPPED_NODE_FORESTS",
    "LearnedLabel",
    "NodeClassifier",
    "default_node_classifier",
    "default_node_classifier_path",
    "learned_label",
    "load_node_classifier",
    "resolve_node_classifier",
    "with_learned_label",
]

DEFAULT_NODE_CLASSIFIER = "node-forest-phantom.safetensors"
LEARNED_CLASSES = (NodeLabel.NEGATIVE, NodeLabel.ITC, NodeLabel.MICRO, NodeLabel.MACRO)
# The shipped classifier's caution, pinned by the digest of its arrays (``tensors_hash``), as
# ``models/shipped.py`` pins the patch models': an unkeyed content hash can be recomputed by
# whoever edits the header, so a file holding these trees must still say what they were
# trained on. Retraining the shipped file means a new digest here (tests check it).
SHIPPED_NODE_FORESTS = {
    "104ac7348544ffc435e07ce5c4f7dc53a387c881bbec6cdf340f296405932c30": (
        "trained on phantoms only (synthesised maps of phantom nodes, not real tissue)"
    ),
}
CELL_SIZE_TOLERANCE = (
    0.1  # relative: map cells this much outside the training maps' get no label
)


@dataclass(frozen=True, eq=False)
class NodeClassifier:
    """A loaded node classifier: its forest, file and what it says of itself."""

    forest: NodeForest
    path: Path

    @property
    def name(self) -> str:
        return str(self.forest.description.get("name") or self.path.stem)

    @property
    def caution(self) -> str:
        """What it was trained on, in a few words ("trained on phantoms only ...")."""
        return str(self.forest.description.get("caution") or "")

    def outside_training(self, features: np.ndarray) -> str | None:
        """Why a map is unlike every training map (its cells another size than those the
        classifier learned from, beyond ``CELL_SIZE_TOLERANCE``), or None. The other features
        vary with the tissue; the cell size is the map's frame, and a forest's thresholds on
        diameters in cells mean nothing at another one."""
        ranges = self.forest.description.get("feature_ranges")
        span = ranges.get("map_cell_mm") if isinstance(ranges, dict) else None
        if not (
            isinstance(span, list)
            and len(span) == 2
            and all(isinstance(v, (int, float)) for v in span)
        ):
            return None
        cell = float(features[FEATURE_NAMES.index("map_cell_mm")])
        low, high = (
            float(span[0]) * (1 - CELL_SIZE_TOLERANCE),
            float(span[1]) * (1 + CELL_SIZE_TOLERANCE),
        )
        if low <= cell <= high:
            return None
        trained = (
            f"{span[0]:.3f} mm"
            if span[0] == span[1]
            else f"{span[0]:.3f}-{span[1]:.3f} mm"
        )
        return (
            f"the learned classifier was trained on maps of {trained} cells, this map's are "
            f"{cell:.3f} mm (another model or grid step)"
        )

    def card(self) -> dict[str, Any]:
        """What ``histoviewer models`` and Help > About list: name, caution, what it is,
        its training data, out-of-bag accuracy, file and digests (``content_hash`` of the
        file; ``arrays_digest``: the trees' arrays, which ``SHIPPED_NODE_FORESTS`` pins)."""
        d = self.forest.description
        trained = d.get("trained_on") if isinstance(d.get("trained_on"), dict) else {}
        phantoms = trained.get("phantoms") if isinstance(trained.get("phantoms"), dict) else {}
        digest = tensors_hash(self.forest.tensors())
        return {
            "name": self.name,
            "caution": self.caution,
            "kind": str(d.get("kind") or "random forest"),
            "trees": self.forest.trees,
            "classes": list(self.forest.classes),
            "features": len(self.forest.features),
            "trained_on": (
                f"{trained.get('nodes', '?')} nodes of {trained.get('patients', '?')} patients"
                + (f"; maps {phantoms['maps']}" if phantoms.get("maps") else "")
            ),
            "oob_accuracy": d.get("oob_accuracy"),
            "created": str(d.get("created") or ""),
            "path": str(self.path),
            "content_hash": self.forest.content_hash,
            "arrays_digest": digest,
            "shipped": digest in SHIPPED_NODE_FORESTS,
        }

    def predict(self, features: np.ndarray) -> tuple[NodeLabel, dict[str, float]]:
        proba = self.forest.predict_proba(np.asarray(features, np.float64)[None])[0]
        # rounded as summary.json holds them: a label made here and one read back are equal
        probabilities = {
            c: round(float(p), 6) for c, p in zip(self.forest.classes, proba)
        }
        return NodeLabel(self.forest.classes[int(np.argmax(proba))]), probabilities


def load_node_classifier(path: str | Path) -> NodeClassifier:
    """A node classifier file, checked (``load_forest``) and refused unless its features are
    exactly ours, in our order, and its classes node labels."""
    p = Path(path)
    forest = load_forest(p)
    pinned = SHIPPED_NODE_FORESTS.get(tensors_hash(forest.tensors()))
    if pinned is not None and forest.description.get("caution") != pinned:
        raise ModelLoadError(
            f"{p}: holds the trees of HistoViewer's shipped node classifier, but its description "
            f"changes what they were trained on; refused. They are: {pinned}"
        )
    if forest.features != FEATURE_NAMES:
        raise ModelLoadError(
            f"{p}: made for other map features ({len(forest.features)} features, "
            f"this HistoViewer computes {len(FEATURE_NAMES)}): train it again"
        )
    allowed = {c.value for c in LEARNED_CLASSES}
    if not set(forest.classes) <= allowed:
        raise ModelLoadError(
            f"{p}: its classes {list(forest.classes)} are not node labels "
            f"({', '.join(sorted(allowed))})"
        )
    return NodeClassifier(forest, p)


def default_node_classifier_path() -> Path:
    return bundled_resources_dir() / "models" / DEFAULT_NODE_CLASSIFIER


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime_ns: int) -> NodeClassifier:
    return load_node_classifier(path)


def resolve_node_classifier(spec: str | Path | None) -> NodeClassifier | None:
    """``None`` or ``"none"``: no learned label; ``"default"``: the shipped one; else a file.
    Loaded once per file version (cached)."""
    if spec is None or str(spec).lower() == "none":
        return None
    path = default_node_classifier_path() if str(spec) == "default" else Path(spec)
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0  # load_node_classifier names the file and why it cannot be read
    return _cached(str(path), mtime)


def default_node_classifier() -> NodeClassifier | None:
    """The shipped classifier, or None when it is missing or unusable (the rules still work;
    the log says why)."""
    try:
        return resolve_node_classifier("default")
    except ModelLoadError as exc:
        log.warning("no learned node label: %s", exc)
        return None


@dataclass(frozen=True)
class LearnedLabel:
    """The learned classifier's opinion of one node. ``label`` is ``unknown`` when none may be
    shown (``reason`` says why); ``rule_label`` the rule-based label it is compared with;
    ``probabilities`` per class (empty when not shown); ``classifier``/``classifier_hash``/
    ``caution`` name the classifier and what it was trained on."""

    label: NodeLabel
    rule_label: NodeLabel
    classifier: str
    classifier_hash: str = ""
    caution: str = ""
    probabilities: Mapping[str, float] | None = None
    reason: str | None = None

    @property
    def shown(self) -> bool:
        return self.reason is None and self.label is not NodeLabel.UNKNOWN

    @property
    def disagrees(self) -> bool:
        """Both labels shown and different: the pathologist should look at this node."""
        return (
            self.shown
            and self.rule_label is not NodeLabel.UNKNOWN
            and self.label is not self.rule_label
        )

    @property
    def confidence(self) -> float | None:
        return (
            None
            if not self.shown or not self.probabilities
            else float(self.probabilities[self.label.value])
        )

    def describe(self) -> str:
        """One line for every output: 'micro (p 0.82), differs from the rules (itc): check this
        node', or 'no label: <reason>'."""
        if not self.shown:
            return f"no label: {self.reason or 'not computed'}"
        text = f"{self.label.value} (p {self.confidence:.2f})"
        if self.disagrees:
            return f"{text}, differs from the rule-based label ({self.rule_label.value}): check this node"
        return f"{text}, agrees with the rule-based label"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label.value,
            "rule_label": self.rule_label.value,
            "disagrees": self.disagrees,
            "probabilities": None
            if self.probabilities is None
            else {k: round(v, 6) for k, v in self.probabilities.items()},
            "reason": self.reason,
            "classifier": self.classifier,
            "classifier_hash": self.classifier_hash,
            "caution": self.caution,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LearnedLabel:
        probs = data.get("probabilities")
        return cls(
            label=NodeLabel.parse(str(data["label"])),
            rule_label=NodeLabel.parse(str(data["rule_label"])),
            classifier=str(data.get("classifier") or ""),
            classifier_hash=str(data.get("classifier_hash") or ""),
            caution=str(data.get("caution") or ""),
            probabilities=None
            if probs is None
            else {str(k): float(v) for k, v in dict(probs).items()},
            reason=None if data.get("reason") is None else str(data["reason"]),
        )


def learned_label(
    classifier: NodeClassifier,
    encoded: np.ndarray,
    found: SlideLesions,
    resolution: NodeResolution,
) -> LearnedLabel:
    """The classifier's label for the map ``encoded`` (``found`` = its ``analyse_map``),
    or none with the reason when ``resolution`` (the node's rule-based label as it may be
    stated) is not final: the same honesty rules for both labels."""
    common = {
        "rule_label": resolution.label,
        "classifier": classifier.name,
        "classifier_hash": classifier.forest.content_hash,
        "caution": classifier.caution,
    }
    if not resolution.resolved:
        return LearnedLabel(label=NodeLabel.UNKNOWN, reason=resolution.reason, **common)
    features = node_features(encoded, found)
    outside = classifier.outside_training(features)
    if outside:
        return LearnedLabel(label=NodeLabel.UNKNOWN, reason=outside, **common)
    label, probabilities = classifier.predict(features)
    return LearnedLabel(label=label, probabilities=probabilities, **common)


def with_learned_label(
    summary: SlideSummary, spec: str | None, encoded: np.ndarray, found: SlideLesions
) -> SlideSummary:
    """``summary`` with the learned label of classifier ``spec`` (``resolve_node_classifier``;
    "default" falls back to none when the shipped file is missing) beside its own label."""
    classifier = (
        default_node_classifier()
        if spec == "default"
        else resolve_node_classifier(spec)
    )
    if classifier is None:
        return summary
    return replace(
        summary, learned=learned_label(classifier, encoded, found, summary.resolution)
    )
