"""Review progress of a case: per node, how many of the AI's hotspots the pathologist has
decided, and the node labels and pN stage "as reviewed" beside the AI's.

A node's hotspots are the lesions of its analysis (``summary.json`` as ``analyze`` and the
case view write it: the lesions with their centroid and box, the model's hash); its
decisions are those saved with its annotations (``annotations.store``: the autosave beside
the slide or in the user data folder). Without an analysis the hotspots are not known: the
node says so and is never counted as reviewed. A node whose annotations cannot be read
says why, and is not counted as reviewed either.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histoviewer.core.analysis.camelyon17 import group_cases
from histoviewer.core.analysis.case import node_result
from histoviewer.core.analysis.review_queue import (
    ReviewedLabel,
    ReviewProgress,
    ReviewQueue,
    build_queue,
    reviewed_label,
)
from histoviewer.core.analysis.staging import StageResult, stage_patient
from histoviewer.core.analysis.summary import (
    SlideFailure,
    SlideOutcome,
    SlideSummary,
    read_summary,
)
from histoviewer.core.annotations.document import AnnotationDocument
from histoviewer.core.annotations.store import open_document
from histoviewer.core.atomic import same_file
from histoviewer.core.errors import HistoViewerError, StagingError
from histoviewer.core.paths import user_data_dir

__all__ = ["CaseReview", "NodeReview", "case_review", "default_analysis_roots", "find_analyses", "node_review"]


@dataclass(frozen=True)
class NodeReview:
    """One node's review. ``progress`` None: its hotspots are not known (``problem`` says
    why); ``reviewed`` None likewise."""

    slide: Path
    progress: ReviewProgress | None
    decisions: int  # decisions stored with the slide (any model)
    ai_label: str  # the AI's label as staging states it ("macro", "unknown (...)")
    reviewed: ReviewedLabel | None
    problem: str = ""

    @property
    def node(self) -> str:
        return self.slide.name

    @property
    def state(self) -> str:
        """"reviewed", "3 of 7 hotspots unreviewed", "no hotspots", "not analysed: ..."."""
        if self.progress is None:
            return self.problem or "hotspots not known"
        if self.progress.total == 0:
            return "no hotspots"
        if self.progress.complete:
            return "reviewed"
        return f"{self.progress.unreviewed} of {self.progress.total} hotspots unreviewed"

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "slide": str(self.slide), "state": self.state,
                "progress": None if self.progress is None else self.progress.to_dict(),
                "decisions_stored": self.decisions, "ai_label": self.ai_label,
                "reviewed_label": None if self.reviewed is None else self.reviewed.to_dict(),
                "problem": self.problem or None}


@dataclass(frozen=True)
class CaseReview:
    """Every node's review and, per patient, the stage from the AI and as reviewed."""

    nodes: tuple[NodeReview, ...]
    ai_stages: tuple[StageResult, ...]
    reviewed_stages: tuple[StageResult, ...]
    errors: Mapping[str, str]

    @property
    def progress(self) -> ReviewProgress:
        total = ReviewProgress(0)
        for n in self.nodes:
            if n.progress is not None:
                total = total + n.progress
        return total

    @property
    def complete(self) -> bool:
        """Every node's hotspots known and decided."""
        return all(n.progress is not None and n.progress.complete for n in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "progress": self.progress.to_dict(),
                "nodes": [n.to_dict() for n in self.nodes],
                "stages": [{"patient": a.patient, "ai": a.stage_text, "as_reviewed": r.stage_text,
                            "as_reviewed_reason": r.reason}
                           for a, r in zip(self.ai_stages, self.reviewed_stages)],
                "errors": dict(self.errors)}


def default_analysis_roots(slides: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Where the case view analyses a case by default: ``<user data>/analyses/<patient>``
    (per CAMELYON17 patient), else the name of the slides' folder."""
    names = list(group_cases(slides))
    if slides:
        names.append(Path(slides[0]).resolve().parent.name)
    return [user_data_dir() / "analyses" / n for n in dict.fromkeys(names)]


def find_analyses(roots: Iterable[str | os.PathLike[str]], slides: Sequence[str | os.PathLike[str]]
                  ) -> dict[Path, SlideOutcome]:
    """The analysis of each slide found in ``roots`` (folders that ``analyze`` or the case
    view wrote: one sub-folder per slide with its ``summary.json``), by slide path."""
    wanted = [Path(s) for s in slides]
    found: dict[Path, SlideOutcome] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for sub in sorted(root.iterdir()):
            if not (sub / "summary.json").is_file():
                continue
            try:
                outcome = read_summary(sub)
            except HistoViewerError:
                continue  # not one of ours, or damaged: that slide shows "not analysed"
            for slide in wanted:
                if slide not in found and (Path(outcome.slide) == slide or same_file(outcome.slide, slide)):
                    found[slide] = outcome
    return found


def node_review(slide: str | os.PathLike[str], outcome: SlideOutcome | None,
                doc: AnnotationDocument | None = None, queue: ReviewQueue | None = None,
                queue_map_complete: bool = False) -> NodeReview:
    """One node: ``outcome`` its analysis (None: none found); ``doc`` its open annotations
    (None: read from the autosave); ``queue`` its live review queue when the slide is open,
    used only when there is no analysis (the analysis's lesions are the whole slide's), with
    whether its map covers all tissue (``queue_map_complete``)."""
    slide = Path(slide)
    mpp = outcome.mpp if isinstance(outcome, SlideSummary) else None
    if doc is None:
        try:
            doc, _ = open_document(slide, mpp)
        except HistoViewerError as exc:
            ai = node_result(outcome).label_text if outcome is not None else "not analysed"
            return NodeReview(slide, None, 0, ai, None, f"annotations unreadable: {exc}")
    decisions = doc.decisions()
    if outcome is None and queue is None:
        return NodeReview(slide, None, len(decisions), "not analysed", None,
                          "not analysed: the AI's hotspots are not known")
    if isinstance(outcome, SlideFailure) and queue is None:
        return NodeReview(slide, None, len(decisions), node_result(outcome).label_text, None,
                          f"analysis failed: {outcome.error}")
    complete = queue_map_complete
    if isinstance(outcome, SlideSummary):  # the analysis's hotspots, even when the slide is open
        if not outcome.model.content_hash:
            return NodeReview(slide, None, len(decisions), node_result(outcome).label_text, None,
                              "the analysis names no model hash: its hotspots cannot be matched to decisions")
        queue = build_queue(outcome.lesions, decisions, outcome.model.content_hash)
        complete = not outcome.provisional
    ai = node_result(outcome).label_text if outcome is not None else "see the viewer"
    return NodeReview(slide, queue.progress, len(decisions), ai, reviewed_label(doc, queue, map_complete=complete))


def case_review(slides: Sequence[str | os.PathLike[str]], outcomes: Mapping[Path, SlideOutcome],
                open_nodes: Mapping[Path, tuple[AnnotationDocument, ReviewQueue | None, bool]] | None = None
                ) -> CaseReview:
    """Every node of ``slides`` (``node_review``) and each patient's stage, from the AI and
    as reviewed. ``open_nodes``: slides open in the viewer, with their document (unsaved
    decisions included), their live queue (None: none) and whether its map is whole."""
    open_nodes = open_nodes or {}
    nodes = []
    for s in slides:
        path = Path(s)
        doc, queue, whole = open_nodes.get(path, (None, None, False))
        nodes.append(node_review(path, outcomes.get(path), doc, queue, whole))
    by_slide = {str(n.slide): n for n in nodes}
    ai_stages, reviewed_stages, errors = [], [], {}
    for patient, group in group_cases(list(by_slide)).items():
        members = [by_slide[s] for s in group]
        ai_nodes = [node_result(outcomes[Path(s)]) for s in group if Path(s) in outcomes]
        if len(ai_nodes) != len(group):
            errors[patient] = "not staged: " + ", ".join(Path(s).name for s in group if Path(s) not in outcomes) \
                + " not analysed"
            continue
        rev_nodes = [n.reviewed.node_result(n.node) if n.reviewed is not None else ai
                     for n, ai in zip(members, ai_nodes)]
        try:
            ai_stage, reviewed_stage = stage_patient(patient, ai_nodes), stage_patient(patient, rev_nodes)
            ai_stages.append(ai_stage)
            reviewed_stages.append(reviewed_stage)
        except StagingError as exc:
            errors[patient] = str(exc)
    return CaseReview(tuple(nodes), tuple(ai_stages), tuple(reviewed_stages), errors)
