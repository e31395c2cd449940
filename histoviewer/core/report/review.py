"""The pathologist's review in reports: per slide the decisions on the AI's hotspots and the
node label as reviewed; per case the pN stage as reviewed beside the AI's.

A slide's review is read from its saved annotations (``annotations.store``: the autosave
beside the slide or in the user data folder), matched to the hotspots of its analysis
(``analysis.review_status.node_review``). A slide without review decisions has no review
(``None``): the report says nothing of one. A slide whose annotations cannot be read has a
review that says so, and its label as reviewed is unknown, never the AI's in disguise.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histoviewer.core.analysis.node_label import SlideLesions
from histoviewer.core.analysis.review_queue import (
    ReviewedLabel,
    ReviewProgress,
    build_queue,
    reviewed_label,
)
from histoviewer.core.analysis.review_status import node_review
from histoviewer.core.analysis.staging import NodeResult, StageResult, stage_patient
from histoviewer.core.analysis.summary import SlideSummary
from histoviewer.core.annotations.document import AnnotationDocument
from histoviewer.core.annotations.review import ReviewDecision
from histoviewer.core.annotations.store import load_autosave
from histoviewer.core.errors import HistoViewerError, StagingError
from histoviewer.core.staging_terms import NodeLabel

if TYPE_CHECKING:  # model.py imports this module
    from histoviewer.core.report.model import CaseReport, SlideReport

__all__ = ["SlideReview", "case_with_review", "map_slide_review", "slide_review"]


@dataclass(frozen=True)
class SlideReview:
    """``progress``/``reviewed`` None when the hotspots could not be matched (``problem``)."""

    progress: ReviewProgress | None
    reviewed: ReviewedLabel | None
    decisions: tuple[ReviewDecision, ...]
    problem: str = ""

    @property
    def text(self) -> str:
        """"micro (12 of 12 reviewed: 3 tumour, 9 not tumour, 0 unsure)"."""
        if self.reviewed is None or self.progress is None:
            return f"not known ({self.problem})"
        return f"{self.reviewed.text} ({self.progress.text}: {self.progress.detail})"

    def node_result(self, node: str) -> NodeResult:
        if self.reviewed is None:
            return NodeResult(node, NodeLabel.UNKNOWN, reason=self.problem or "review not readable")
        return self.reviewed.node_result(node)

    def to_dict(self) -> dict[str, Any]:
        return {"progress": None if self.progress is None else self.progress.to_dict(),
                "label_as_reviewed": None if self.reviewed is None else self.reviewed.to_dict(),
                "decisions": [{k: v for k, v in d.to_dict().items() if k != "l0_outline"} for d in self.decisions],
                "problem": self.problem or None}


def slide_review(summary: SlideSummary) -> SlideReview | None:
    """The review of the analysed slide, from its saved annotations; None without decisions."""
    slide = Path(summary.slide)
    doc = _saved_decisions(slide, summary.mpp)
    if not isinstance(doc, AnnotationDocument):
        return doc
    node = node_review(slide, summary, doc)
    return SlideReview(node.progress, node.reviewed, tuple(doc.decisions()), node.problem)


def map_slide_review(slide_path: str, found: SlideLesions, model_hash: str, mpp: float | None) -> SlideReview | None:
    """The review of a slide reported from its live map (the viewer's export): its saved
    decisions matched to the map's lesions; None without decisions."""
    doc = _saved_decisions(slide_path, mpp)
    if not isinstance(doc, AnnotationDocument):
        return doc
    if not model_hash:
        return SlideReview(None, None, tuple(doc.decisions()),
                           "the model has no hash: its lesions cannot be matched to decisions")
    queue = build_queue(found.lesions, doc.decisions(), model_hash)
    return SlideReview(queue.progress, reviewed_label(doc, queue, map_complete=not found.provisional),
                       tuple(doc.decisions()))


def case_with_review(case: CaseReport, members: list[SlideReport]) -> CaseReport:
    """``case`` with its stage as reviewed, when a node of it has a review: reviewed nodes
    by their label as reviewed, the others by the AI's."""
    if not any(m.review is not None for m in members):
        return case
    nodes = [m.review.node_result(m.slide_name) if m.review is not None else m.node_result() for m in members]
    try:
        result: StageResult = stage_patient(case.patient, nodes)
    except StagingError as exc:
        return replace(case, reviewed_stage="unknown (not staged)", reviewed_reason=str(exc))
    return replace(case, reviewed_stage=result.stage_text, reviewed_reason=result.reason)


def _saved_decisions(slide: str | Path, mpp: float | None) -> AnnotationDocument | SlideReview | None:
    """The slide's saved annotations as a document when they hold review decisions; None
    without decisions; a ``SlideReview`` saying why when they cannot be read."""
    try:
        recovery = load_autosave(slide)
    except HistoViewerError as exc:
        return SlideReview(None, None, (), f"annotations unreadable: {exc}")
    except OSError as exc:
        return SlideReview(None, None, (), f"annotations unreadable: {exc.strerror or exc}")
    if recovery is None or not recovery.annotation_set.decisions:
        return None
    return AnnotationDocument.from_set(recovery.annotation_set, mpp=mpp)
