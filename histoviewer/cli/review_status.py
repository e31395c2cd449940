"""``histoviewer review-status CASE_DIR``: how far the pathologist's review of a case is.

Per node: the AI's hotspots (from the case's analysis: ``analyze`` or the case view's
output, one ``summary.json`` per slide), the decisions saved with the slide's annotations,
what is left to review, and the node label from the AI and as reviewed; then each patient's
pN stage from the AI and as reviewed. Exit status 0 when every hotspot of every node is
decided, 3 when some are not (or a node's hotspots are unknown), 2 on an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from histoviewer.core.strict_json import strict_dumps

__all__ = ["register", "run_review_status"]

EXIT_INCOMPLETE = 3


def register(sub) -> None:
    p = sub.add_parser(
        "review-status", help="review progress of a case: reviewed and unreviewed hotspots per node",
        description="For each slide of CASE_DIR (a folder of one patient's node slides, as the viewer's "
                    "File > Open case takes it): the AI's hotspots from the case's analysis, the review "
                    "decisions saved with the slide's annotations (tumour / not tumour / unsure), how many "
                    "are still unreviewed, and the node label from the AI and as reviewed (accepted lesions "
                    "and the pathologist's own tumour annotations). The analysis is looked for in --analysis "
                    "folders and where the viewer's case view writes by default. Exit status 3 while a "
                    "hotspot is unreviewed or a node's hotspots are unknown.")
    p.add_argument("case_dir", type=Path, metavar="CASE_DIR")
    p.add_argument("--analysis", type=Path, action="append", default=[], metavar="DIR",
                   help="a folder holding the case's analysis (one sub-folder per slide with its summary.json, "
                        "as `histoviewer analyze --out DIR` writes it); may be given more than once")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=run_review_status)


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def run_review_status(args: argparse.Namespace) -> int:
    from histoviewer.core.analysis.camelyon17 import group_cases
    from histoviewer.core.analysis.review_status import (
        case_review,
        default_analysis_roots,
        find_analyses,
    )
    from histoviewer.core.errors import HistoViewerError
    from histoviewer.core.patches.slide_patches import list_slides

    folder = args.case_dir
    if not folder.is_dir():
        raise HistoViewerError(f"{folder}: not a folder of slides")
    slides = [Path(s) for group in group_cases(list_slides(folder)).values() for s in group]
    if not slides:
        raise HistoViewerError(f"{folder}: no slide files in this folder")
    roots = [*args.analysis, *default_analysis_roots(slides)]
    review = case_review(slides, find_analyses(roots, slides))
    if args.json:
        print(strict_dumps(review.to_dict(), indent=2))
        return 0 if review.complete else EXIT_INCOMPLETE
    total = review.progress
    print(f"Case {folder} ({len(slides)} node{'s' if len(slides) != 1 else ''}): {total.reviewed} of {total.total} "
          f"hotspots reviewed ({total.detail})")
    header = ["node", "hotspots", "reviewed", "tumour", "not", "unsure", "AI label", "as reviewed", "state"]
    rows = []
    for n in review.nodes:
        p = n.progress
        counts = ["?"] * 5 if p is None else [str(v) for v in (p.total, p.reviewed, p.accepted, p.rejected, p.unsure)]
        rows.append([n.node, *counts, n.ai_label, "-" if n.reviewed is None else n.reviewed.text, n.state])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)] + [0]
    print(_row(header, widths))
    for r in rows:
        print(_row(r, widths))
    for ai, reviewed in zip(review.ai_stages, review.reviewed_stages):
        print(f"{ai.patient}: pN stage from the AI: {ai.stage_text}; as reviewed: {reviewed.stage_text}")
    for patient, error in review.errors.items():
        print(f"{patient}: {error}")
    if not review.complete:
        left = [n.node for n in review.nodes if n.progress is None or not n.progress.complete]
        print(f"histoviewer: review not complete: {', '.join(left)}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
