"""The slide (lymph node) label from its lesions, and everything a summary shows about it.

A node's label (``staging_terms.NodeLabel``) is the size class of its largest lesion
(CAMELYON17): ``negative`` with no lesion, else ``itc``, ``micro`` or ``macro``; ``unknown``
when the slide has no scale, so a size cannot be turned into a class (never a guess). A label
computed while part of the tissue is still unclassified is *provisional*: a lesion may hide
in the rest.

A label is *final* only when every tissue cell was classified, the slide has a scale and the
tissue lies inside what the model learned (``resolve_node_label``). Otherwise the node is
*unresolved*: its label is ``unknown`` with the reason, and what the classified tissue shows
so far (``label_so_far``) is only a lower bound (a failed or unclassified cell may hide a
larger lesion). Failed cells are not coverage: coverage = classified tissue cells / tissue
cells, with failed cells counted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from histoviewer.core.analysis.lesions import Lesion, LesionParams, MapFrame, find_lesions
from histoviewer.core.staging_terms import NodeLabel, SizeClass

__all__ = ["NodeResolution", "SlideLesions", "TissueCounts", "analyse_map", "classified_fraction", "node_label",
           "resolve_node_label", "tissue_counts"]

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


@dataclass(frozen=True)
class TissueCounts:
    """Tissue cells of a map: classified (hold a probability), failed (could not be read or
    classified) and the rest not computed yet."""

    tissue: int
    classified: int
    failed: int
    screened: int = 0  # screened negative (``inference.screening``): not classified, not pending

    @property
    def coverage(self) -> float:
        """Classified fraction of the tissue (failed cells are not coverage); 1.0 without tissue."""
        return 1.0 if self.tissue <= 0 else self.classified / self.tissue


def tissue_counts(encoded: np.ndarray) -> TissueCounts:
    """Counts of an encoded map: background is -1, failed -2, screened negative -3, not
    computed NaN."""
    values = np.asarray(encoded, np.float64)
    tissue = ~np.isclose(values, -1.0)
    classified = tissue & np.isfinite(values) & (values >= 0)
    failed = np.isclose(values, -2.0)
    screened = np.isclose(values, -3.0)
    return TissueCounts(int(np.count_nonzero(tissue)), int(np.count_nonzero(classified)),
                        int(np.count_nonzero(failed)), int(np.count_nonzero(screened)))


def classified_fraction(encoded: np.ndarray) -> float:
    """Fraction of tissue cells (all but background, -1) that hold a probability; NaN (not
    computed) and -2 (failed) are tissue that was not classified. 1.0 without tissue."""
    return tissue_counts(encoded).coverage


@dataclass(frozen=True)
class NodeResolution:
    """A node's label as every output states it: ``label`` is final, or ``unknown`` with
    ``reason`` when unresolved; ``label_so_far`` is what the classified tissue shows (a lower
    bound while unresolved, the label itself when final)."""

    label: NodeLabel
    label_so_far: NodeLabel
    reason: str | None = None

    @property
    def resolved(self) -> bool:
        return self.reason is None


def _pct(value: float) -> str:
    """A fraction as a percentage that never rounds a part up to 100 % or down to 0 %."""
    pct = 100.0 * value
    if 0.0 < pct < 1.0:
        return "<1 %"
    if 99.0 < pct < 100.0:
        return ">99 %"
    return f"{pct:.0f} %"


def resolve_node_label(label_so_far: NodeLabel, *, tissue: int, classified: int, failed: int,
                       scale_known: bool = True, out_of_domain_reason: str | None = None,
                       coverage: float | None = None, screened: int = 0) -> NodeResolution:
    """The one rule for whether a node's label is final (module docstring). ``tissue``,
    ``classified``, ``failed``: tissue cells of its map; where they are not known (``tissue``
    0), ``coverage`` (classified fraction) stands for them. The reasons name the counts, so
    a reader sees how much of the node is missing. ``screened``: cells a screening pass
    found nothing in (the screened strategy): not classified, but assessed, so not pending;
    the label of a screened analysis says so wherever its coverage is shown."""
    reasons = []
    if not scale_known:
        reasons.append("the slide states no scale, so no lesion can be sized")
    if out_of_domain_reason:
        reasons.append(out_of_domain_reason)
    if failed > 0:
        reasons.append(f"{failed} of {tissue} tissue patches failed")
    pending = tissue - classified - failed - screened
    if tissue <= 0 and (coverage is None or coverage >= 1.0):
        # Nothing was classified, so "negative" would rest on no tissue at all: a blank or
        # wrongly masked slide must not read as a node without metastasis.
        reasons.append("no tissue found on the slide, so nothing was classified")
    elif tissue <= 0 and coverage < 1.0:
        reasons.append(f"only {_pct(coverage)} of the tissue classified")
    elif pending > 0:
        reasons.append(f"{pending} of {tissue} tissue patches not classified "
                       f"(only {_pct(classified / tissue)} of the tissue classified)")
    if not reasons and label_so_far is NodeLabel.UNKNOWN:
        reasons.append("no lesion size known, so no size class")
    if not reasons:
        return NodeResolution(label_so_far, label_so_far)
    # out of domain, even the lesions found are no metastases to count: nothing is known
    so_far = NodeLabel.UNKNOWN if out_of_domain_reason else label_so_far
    return NodeResolution(NodeLabel.UNKNOWN, so_far, "; ".join(reasons))


@dataclass(frozen=True)
class SlideLesions:
    """The lesions of one slide, its label and how much of its tissue they rest on."""

    lesions: tuple[Lesion, ...]
    label: NodeLabel
    coverage: float  # classified fraction of the tissue, 0..1
    params: LesionParams
    frame: MapFrame

    counts: TissueCounts = TissueCounts(0, 0, 0)

    @property
    def provisional(self) -> bool:
        """True while part of the tissue is unclassified (failed or not computed yet): the
        label may still go up."""
        c = self.counts
        if c.screened and c.tissue:
            return c.failed > 0 or c.classified + c.screened < c.tissue
        return self.coverage < 1.0

    @property
    def resolution(self) -> NodeResolution:
        """The label as it may be stated (``resolve_node_label``; the map knows no domain)."""
        return self.resolved()

    def resolved(self, out_of_domain_reason: str | None = None) -> NodeResolution:
        """``resolution``, and unresolved for ``out_of_domain_reason`` when the caller's
        domain verdict gives one (the map alone cannot judge its tissue)."""
        return resolve_node_label(self.label, tissue=self.counts.tissue, classified=self.counts.classified,
                                  failed=self.counts.failed, scale_known=self.frame.mpp is not None,
                                  out_of_domain_reason=out_of_domain_reason, screened=self.counts.screened)

    @property
    def largest(self) -> Lesion | None:
        return self.lesions[0] if self.lesions else None

    def to_dict(self, *, with_outlines: bool = True) -> dict[str, Any]:
        resolution = self.resolution
        return {
            "node_label": resolution.label.value,
            "label_so_far": resolution.label_so_far.value,
            "unresolved_reason": resolution.reason,
            "provisional": self.provisional,
            "failed_cells": self.counts.failed,
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
    counts = tissue_counts(encoded)
    return SlideLesions(lesions=lesions, label=node_label(lesions), coverage=counts.coverage,
                        params=params, frame=frame, counts=counts)
