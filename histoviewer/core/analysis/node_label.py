"""The slide (lymph node) label from its lesions, and everything a summary shows about it.

A node's label (``staging_terms.NodeLabel``) is the size class of its largest lesion
(CAMELYON17): ``negative`` with no lesion, else ``itc``, ``micro`` or ``macro``; ``unknown``
when the slide has no scale, so a size cannot be turned into a class (never a guess). A label
computed while part of the tissue is still unclassified is *provisional*: a lesion may hide
in the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from histoviewer.core.analysis.lesions import Lesion, LesionParams, MapFrame, find_lesions
from histoviewer.core.staging_terms import NodeLabel, SizeClass

__all__ = ["SlideLesions", "analyse_map", "classified_fraction", "node_label"]

_FROM_CLASS = {SizeClass.ITC: NodeLabel.ITC, SizeClass.MICRO: NodeLabel.MICRO,
               SizeClass.MACRO: NodeLabel.MACRO, SizeClass.UNKNOWN: NodeLabel.UNKNOWN}
_RANK = {NodeLabel.NEGATIVE: 0, NodeLabel.ITC: 1, NodeLabel.MICRO: 2, NodeLabel.MACRO: 3}


def node_label(lesions: Sequence[Lesion]) -> NodeLabel:
    """Label from the lesions' size classes: the worst one; ``UNKNOWN`` if any size is unknown
    (without a scale no lesion can be ranked, so no label is safe)."""
    if not lesions:
        return NodeLabel.NEGATIVE
    labels = [_FROM_CLASS[les.size_class] for les in lesions]
    if NodeLabel.UNKNOWN in labels:
        return NodeLabel.UNKNOWN
    return max(labels, key=_RANK.__getitem__)


def classified_fraction(encoded: np.ndarray) -> float:
    """Fraction of tissue cells (all but background, -1) that hold a probability; NaN (not
    computed) and -2 (failed) are tissue that was not classified. 1.0 without tissue."""
    values = np.asarray(encoded, np.float64)
    tissue = ~np.isclose(values, -1.0)
    n_tissue = int(np.count_nonzero(tissue))
    if n_tissue == 0:
        return 1.0
    classified = tissue & np.isfinite(values) & (values >= 0)
    return int(np.count_nonzero(classified)) / n_tissue


@dataclass(frozen=True)
class SlideLesions:
    """The lesions of one slide, its label and how much of its tissue they rest on."""

    lesions: tuple[Lesion, ...]
    label: NodeLabel
    coverage: float  # classified fraction of the tissue, 0..1
    params: LesionParams
    frame: MapFrame

    @property
    def provisional(self) -> bool:
        """True while part of the tissue is unclassified: the label may still go up."""
        return self.coverage < 1.0

    @property
    def largest(self) -> Lesion | None:
        return self.lesions[0] if self.lesions else None

    def to_dict(self, *, with_outlines: bool = True) -> dict[str, Any]:
        return {
            "node_label": self.label.value,
            "provisional": self.provisional,
            "coverage": round(self.coverage, 6),
            "largest_lesion": None if self.largest is None else self.largest.name,
            "largest_diameter_mm": None if self.largest is None or self.largest.diameter_mm is None
            else round(self.largest.diameter_mm, 6),
            "lesion_params": self.params.to_dict(),
            "map_frame": self.frame.to_dict(),
            "lesions": [les.to_dict(with_outline=with_outlines) for les in self.lesions],
        }


def analyse_map(encoded: np.ndarray, frame: MapFrame, params: LesionParams = LesionParams()) -> SlideLesions:
    """Lesions, label and coverage of one encoded probability map (the GUI's and ``analyze``'s
    one entry point)."""
    lesions = find_lesions(encoded, frame, params)
    return SlideLesions(lesions=lesions, label=node_label(lesions), coverage=classified_fraction(encoded),
                        params=params, frame=frame)
