"""The case view's review column: per node how far the review of its hotspots is, and the
pN stage as reviewed beside the AI's (``core.analysis.review_status``).

The nodes' hotspots come from the case's analysis (the case view's output folder, or the
analyses run in this window); their decisions from the open slides' annotation documents
(unsaved decisions included) or, for slides not open, from their autosaves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QTableWidget, QTableWidgetItem

from histoviewer.core.analysis.review_queue import ReviewQueue
from histoviewer.core.analysis.review_status import (
    CaseReview,
    case_review,
    find_analyses,
)
from histoviewer.core.analysis.summary import SlideOutcome
from histoviewer.core.annotations.document import AnnotationDocument

REVIEW_COLUMN_TITLE = "Review"
DONE_COLOUR, OPEN_COLOUR, UNKNOWN_COLOUR = "#1a6e1a", "#a05a00", "#555555"

OpenNodes = Mapping[Path, tuple[AnnotationDocument, ReviewQueue | None, bool]]


def compute_case_review(paths: list[Path], summaries: Mapping[int, SlideOutcome], out_root: Path,
                        open_nodes: Callable[[], OpenNodes] | None) -> CaseReview:
    """The review of the case: analyses from this session's run first, else from disk."""
    outcomes: dict[Path, SlideOutcome] = {paths[row]: s for row, s in summaries.items()}
    missing = [p for p in paths if p not in outcomes]
    if missing:
        outcomes.update(find_analyses([out_root], missing))
    return case_review(paths, outcomes, open_nodes() if open_nodes is not None else None)


def show_case_review(table: QTableWidget, column: int, label: QLabel, review: CaseReview) -> None:
    """Fill the review column and the line under the stage."""
    for row, node in enumerate(review.nodes):
        progress = node.progress
        if progress is None:
            text, colour = node.state, UNKNOWN_COLOUR
        elif progress.total == 0:
            text, colour = "no hotspots", DONE_COLOUR
        elif progress.complete:
            text, colour = f"reviewed ({progress.total})", DONE_COLOUR
        else:
            text, colour = f"{progress.unreviewed} of {progress.total} unreviewed", OPEN_COLOUR
        item = QTableWidgetItem(text)
        item.setForeground(QColor(colour))
        tip = [node.state]
        if progress is not None:
            tip.append(f"{progress.text}: {progress.detail}")
        if node.reviewed is not None:
            tip.append(f"Node label as reviewed: {node.reviewed.text} (AI: {node.ai_label})")
        item.setToolTip("\n".join(tip))
        table.setItem(row, column, item)
    total = review.progress
    lines = [f"Review: {total.reviewed} of {total.total} hotspots reviewed ({total.detail})"
             + ("" if review.complete else " \u2013 not complete")]
    for ai, reviewed in zip(review.ai_stages, review.reviewed_stages):
        lines.append(f"{ai.patient}: pN as reviewed {reviewed.stage_text} (AI: {ai.stage_text})")
    label.setText("\n".join(lines))
    label.setStyleSheet(f"color: {DONE_COLOUR if review.complete else OPEN_COLOUR}; font-weight: bold;")
