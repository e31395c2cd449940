"""The review queue: the AI's hotspots of one slide, in the order a pathologist checks them,
with the decisions already taken, and the node label "as reviewed".

Order (``rank_key``): the size class first (macro, micro, ITC, size unknown: a missed
macrometastasis changes the stage, an ITC hardly does), then the AI's probability to two
decimals, as shown (most confident first), then its uncertainty when the model states one
(most uncertain first among equals), then the larger lesion, then the lesion's index. A
confident model gives many lesions P 1.00: among them the larger is looked at first. Each hotspot is named by ``hotspot_id_for_box``
from the lesion's centroid and box and the model hash, so the same analysis gives the same
queue, and decisions stored with the slide's annotations find their hotspots again.

"As reviewed" (``reviewed_label``): the node's label from the lesions the pathologist
accepted (their size class when decided) and their own tumour-class annotations; rejected
lesions count for nothing. It is final only when every hotspot has a decision that is not
"unsure" and the AI's map covers the whole tissue: otherwise it is a lower bound ("micro so
far") and says what is missing, as every node label does (``staging.NodeResult``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from histoviewer.core.analysis.lesions import Lesion
from histoviewer.core.analysis.staging import NodeResult
from histoviewer.core.annotations.document import AnnotationDocument
from histoviewer.core.annotations.labels import slide_label
from histoviewer.core.annotations.review import (
    ReviewDecision,
    Verdict,
    find_decision_by_id,
    hotspot_id_for_box,
)
from histoviewer.core.staging_terms import NodeLabel, SizeClass

__all__ = [
    "Hotspot",
    "ReviewProgress",
    "ReviewQueue",
    "ReviewedLabel",
    "build_queue",
    "decide",
    "lesion_hotspot_id",
    "rank_key",
    "reviewed_label",
]

_SIZE_RANK = {SizeClass.MACRO: 3, SizeClass.MICRO: 2, SizeClass.ITC: 1, SizeClass.UNKNOWN: 0}
_LABEL_OF_SIZE = {SizeClass.MACRO: NodeLabel.MACRO, SizeClass.MICRO: NodeLabel.MICRO, SizeClass.ITC: NodeLabel.ITC,
                  SizeClass.UNKNOWN: NodeLabel.UNKNOWN}
_LABEL_RANK = {NodeLabel.NEGATIVE: 0, NodeLabel.ITC: 1, NodeLabel.MICRO: 2, NodeLabel.MACRO: 3}


def lesion_hotspot_id(lesion: Lesion, model_hash: str) -> str:
    """The hotspot id of an AI lesion (``review.hotspot_id_for_box``)."""
    return hotspot_id_for_box(lesion.l0_centroid, lesion.l0_bbox, model_hash)


def rank_key(lesion: Lesion, uncertainty: float | None = None) -> tuple:
    """Sort key of the queue order (module doc): smaller comes first."""
    return (-_SIZE_RANK[lesion.size_class], -round(lesion.max_probability, 2),
            -(uncertainty if uncertainty is not None else 0.0), -lesion.l0_diameter, lesion.index)


@dataclass(frozen=True)
class Hotspot:
    """One AI lesion in the queue and the decision on it (None: not reviewed)."""

    hotspot_id: str
    lesion: Lesion
    decision: ReviewDecision | None = None
    uncertainty: float | None = None

    @property
    def reviewed(self) -> bool:
        return self.decision is not None


@dataclass(frozen=True)
class ReviewProgress:
    """How far the review of a slide (or a case) is."""

    total: int
    accepted: int = 0
    rejected: int = 0
    unsure: int = 0

    @property
    def reviewed(self) -> int:
        return self.accepted + self.rejected + self.unsure

    @property
    def unreviewed(self) -> int:
        return self.total - self.reviewed

    @property
    def complete(self) -> bool:
        return self.reviewed >= self.total

    @property
    def text(self) -> str:
        """"12 of 40 reviewed"."""
        return f"{self.reviewed} of {self.total} reviewed"

    @property
    def detail(self) -> str:
        """"3 tumour, 8 not tumour, 1 unsure"."""
        return f"{self.accepted} tumour, {self.rejected} not tumour, {self.unsure} unsure"

    def __add__(self, other: ReviewProgress) -> ReviewProgress:
        return ReviewProgress(self.total + other.total, self.accepted + other.accepted,
                              self.rejected + other.rejected, self.unsure + other.unsure)

    def to_dict(self) -> dict[str, Any]:
        return {"hotspots": self.total, "reviewed": self.reviewed, "unreviewed": self.unreviewed,
                "accepted": self.accepted, "rejected": self.rejected, "unsure": self.unsure,
                "complete": self.complete}


@dataclass(frozen=True)
class ReviewQueue:
    """A slide's hotspots in review order. ``other_decisions``: decisions stored with the
    slide that match no hotspot here (another model's, or an earlier map's): kept in the
    file, shown as such, never counted for this queue."""

    hotspots: tuple[Hotspot, ...]
    model_hash: str
    other_decisions: tuple[ReviewDecision, ...] = ()

    def __len__(self) -> int:
        return len(self.hotspots)

    @property
    def progress(self) -> ReviewProgress:
        verdicts = [h.decision.verdict for h in self.hotspots if h.decision is not None]
        return ReviewProgress(len(self.hotspots), verdicts.count(Verdict.TUMOUR),
                              verdicts.count(Verdict.NOT_TUMOUR), verdicts.count(Verdict.UNSURE))

    def index_of(self, hid: str | None) -> int | None:
        return next((i for i, h in enumerate(self.hotspots) if h.hotspot_id == hid), None)

    def next_unreviewed(self, after: int | None) -> int | None:
        """The first unreviewed hotspot after position ``after`` (wrapping), or None."""
        n = len(self.hotspots)
        start = -1 if after is None else after
        for k in range(1, n + 1):
            i = (start + k) % n
            if not self.hotspots[i].reviewed:
                return i
        return None


def build_queue(lesions: Iterable[Lesion], decisions: Iterable[ReviewDecision], model_hash: str,
                uncertainties: Mapping[int, float] | None = None) -> ReviewQueue:
    """The queue of ``lesions`` (found by the model ``model_hash``) with the matching
    ``decisions``; ``uncertainties``: per lesion index, when the model states one."""
    unc = uncertainties or {}
    decisions = list(decisions)
    by_id = {d.hotspot_id: d for d in decisions}
    ordered = sorted(lesions, key=lambda les: rank_key(les, unc.get(les.index)))
    ids = [lesion_hotspot_id(les, model_hash) for les in ordered]
    # exact ids first, for every lesion; then the position fallback among what is left, so a
    # near neighbour never takes a decision that names another lesion exactly
    found: list[ReviewDecision | None] = [by_id.get(hid) for hid in ids]
    used = {d.hotspot_id for d in found if d is not None}
    for i, les in enumerate(ordered):
        if found[i] is None:
            free = [d for d in decisions if d.hotspot_id not in used and d.model_hash == model_hash]
            match = find_decision_by_id(free, ids[i], les.l0_centroid, model_hash) if free else None
            if match is not None:
                found[i] = match
                used.add(match.hotspot_id)
    hotspots = tuple(Hotspot(hid, les, d, unc.get(les.index)) for hid, les, d in zip(ids, ordered, found))
    others = tuple(d for d in decisions if d.hotspot_id not in used)
    return ReviewQueue(hotspots, model_hash, others)


def decide(hotspot: Hotspot, verdict: Verdict, model_hash: str, reviewer: str,
           when: datetime | None = None, note: str = "") -> ReviewDecision:
    """The decision ``verdict`` on ``hotspot`` now, with what the AI said of it. A hotspot
    matched to an earlier decision by position keeps that decision's id, so the new one
    replaces it."""
    les = hotspot.lesion
    hid = hotspot.decision.hotspot_id if hotspot.decision is not None else hotspot.hotspot_id
    outline = les.l0_outline
    if len(outline) < 3:  # a lesion read without its outline (summary.json): its box
        x, y, w, h = les.l0_bbox
        outline = ((x, y), (x + w, y), (x + w, y + h), (x, y + h))
    stamp = (when or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat(timespec="seconds")
    return ReviewDecision(hid, tuple(outline), verdict, reviewer, stamp, model_hash, les.max_probability,
                          les.size_class, les.diameter_mm, hotspot.uncertainty, note)


@dataclass(frozen=True)
class ReviewedLabel:
    """The node label as reviewed (module doc). ``label``: from what is known so far;
    ``missing``: why it is not final (empty when it is)."""

    label: NodeLabel
    accepted: int
    own_tumour: int
    unreviewed: int
    unsure: int
    largest_name: str | None
    largest_diameter_mm: float | None
    missing: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return not self.missing

    @property
    def text(self) -> str:
        """"macro", or "micro so far (3 hotspots not reviewed)"."""
        if self.final:
            return self.label.value
        return f"{self.label.value} so far ({'; '.join(self.missing)})"

    def node_result(self, node: str) -> NodeResult:
        """This label as a node for staging (``stage_patient``): provisional, with its
        reason, while it is not final."""
        if self.label is NodeLabel.UNKNOWN:
            return NodeResult(node, NodeLabel.UNKNOWN, self.largest_name, self.largest_diameter_mm,
                              reason="; ".join(self.missing) or "accepted lesions cannot be sized: no scale")
        return NodeResult(node, self.label, self.largest_name, self.largest_diameter_mm,
                          provisional=not self.final, reason="; ".join(self.missing) or None)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label.value, "final": self.final, "text": self.text, "accepted": self.accepted,
                "own_tumour_annotations": self.own_tumour, "unreviewed": self.unreviewed, "unsure": self.unsure,
                "largest": self.largest_name, "largest_diameter_mm": self.largest_diameter_mm,
                "missing": list(self.missing)}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def reviewed_label(doc: AnnotationDocument, queue: ReviewQueue | None, *, map_complete: bool = True,
                   decisions: Sequence[ReviewDecision] | None = None) -> ReviewedLabel:
    """The label from accepted lesions and own tumour annotations (module doc). ``queue``:
    the slide's hotspots (None: the AI's lesions are not known, so the label cannot be
    final); ``decisions``: the accepted ones to count (default: the queue's matched
    decisions; every decision of ``doc`` without a queue)."""
    if decisions is None:
        decisions = [h.decision for h in queue.hotspots if h.decision is not None] if queue is not None \
            else doc.decisions()
    accepted = [d for d in decisions if d.verdict is Verdict.TUMOUR]
    own = slide_label(doc)
    sized: list[tuple[str, float | None, SizeClass]] = [
        (f"accepted {d.ai_size_class.value} lesion", d.ai_diameter_mm, d.ai_size_class) for d in accepted]
    sized += [(les.name or "tumour annotation", les.max_diameter_mm, les.size_class) for les in own.lesions]
    progress = queue.progress if queue is not None else None
    missing = []
    if queue is None:
        missing.append("the AI's hotspots are not known (no analysis)")
    elif progress.unreviewed:
        missing.append(f"{_plural(progress.unreviewed, 'hotspot')} not reviewed")
    if progress is not None and progress.unsure:
        missing.append(f"{_plural(progress.unsure, 'hotspot')} marked unsure")
    if not map_complete:
        missing.append("the AI's map does not cover all tissue")
    labels = [_LABEL_OF_SIZE[s] for _, _, s in sized]
    if NodeLabel.UNKNOWN in labels:
        label = NodeLabel.UNKNOWN
        missing.append("a tumour region cannot be sized: the slide states no scale")
    else:
        label = max(labels, key=_LABEL_RANK.__getitem__, default=NodeLabel.NEGATIVE)
    largest = max(sized, key=lambda s: -1.0 if s[1] is None else s[1], default=None)
    return ReviewedLabel(label, len(accepted), len(own.lesions), progress.unreviewed if progress else 0,
                         progress.unsure if progress else 0, None if largest is None else largest[0],
                         None if largest is None else largest[1], tuple(missing))
