"""``histoviewer report``: a PDF, JSON and CSV report of ``histoviewer analyze`` results.

``histoviewer report ANALYSIS_DIR... --out REPORT.pdf [--json FILE] [--csv DIR]``: each
ANALYSIS_DIR is a per-slide folder (with ``summary.json``) or an ``analyze --out`` folder.
Qt is imported only for the PDF, on the offscreen platform, so it runs headless.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the subcommand modules load at start-up: the core only when run
    from collections.abc import Sequence

    from histoviewer.core.analysis.summary import SlideFailure
    from histoviewer.core.jobs import ReportFiles

__all__ = ["register", "run_report", "write_report"]


def register(sub) -> None:
    p = sub.add_parser("report", help="PDF / JSON / CSV report of analyses (per slide and per case)",
                       description="Report the slides analysed by `histoviewer analyze`: a PDF with one "
                                   "page per slide (and a case page when several slides form a case), "
                                   "report.json and lesions.csv / slides.csv / cases.csv.")
    p.add_argument("analyses", nargs="+", type=Path, metavar="ANALYSIS_DIR",
                   help="an analyze --out folder, or one slide's folder in it")
    p.add_argument("--out", type=Path, default=None, metavar="REPORT.pdf", help="the PDF to write")
    p.add_argument("--json", dest="json_path", type=Path, default=None, metavar="FILE",
                   help="also write the report as JSON")
    p.add_argument("--csv", dest="csv_dir", type=Path, default=None, metavar="DIR",
                   help="also write lesions.csv, slides.csv and cases.csv into DIR")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the report files when they exist (the analyses are never replaced)")
    p.add_argument("--print-json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run_report)


def write_report(analyses: list[Path], pdf: Path | None, json_path: Path | None,
                 csv_dir: Path | None, failures: Sequence[SlideFailure] = ()) -> ReportFiles:
    """``core.jobs.write_report`` with Qt's PDF writer (on the offscreen platform, so it
    runs headless; Qt is imported only when a PDF is asked for); ``failures``: slides that
    failed in this run (they have no folder, but are nodes of their case)."""
    from histoviewer.core.jobs import write_report as report_job

    if pdf is None:
        return report_job(analyses, None, json_path, csv_dir, failures=failures)
    # headless: the platform must be chosen before any Q(Gui)Application exists
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from histoviewer.qt.report_pdf import page_plan, write_report_pdf

    return report_job(analyses, pdf, json_path, csv_dir, write_report_pdf=write_report_pdf,
                      count_pages=lambda report: len(page_plan(report)), failures=failures)


def run_report(args: argparse.Namespace) -> int:
    from histoviewer.cli.hints import demo_warning
    from histoviewer.core.errors import ReportError
    from histoviewer.core.models.classifier import DEMO_WARNING

    if args.out is None and args.json_path is None and args.csv_dir is None:
        raise ReportError("nothing to write: give --out REPORT.pdf, --json FILE and/or --csv DIR")
    if args.out is not None and args.out.suffix.lower() != ".pdf":
        raise ReportError(f"{args.out}: the report is a PDF; name it .pdf")
    from histoviewer.cli.stage import EXIT_UNRESOLVED
    from histoviewer.core.jobs.exports import check_report_targets
    from histoviewer.core.strict_json import strict_dumps

    check_report_targets(args.out, args.json_path, args.csv_dir, args.analyses, overwrite=args.overwrite)
    written = write_report(list(args.analyses), args.out, args.json_path, args.csv_dir)
    status = EXIT_UNRESOLVED if written.unresolved else 0  # a node without a final label
    if args.print_json:
        print(strict_dumps(written.to_dict(), indent=2))
        return status
    for case in written.cases:
        print(f"{case.patient}: {case.stage_text}")
        for node, why in case.unresolved:
            print(f"  {node}: no final label: {why}")
        if case.border_warning:  # a border lesion decides the stage
            print(f"  caution: {case.border_warning}")
    if written.pdf is not None:
        print(f"PDF: {written.pdf} ({written.pages} pages)")
    if written.json is not None:
        print(f"JSON: {written.json}")
    for path in written.tables:
        print(f"CSV: {path}")
    for caution in written.model_cautions:  # what each model was trained on; not for diagnosis
        if caution != DEMO_WARNING:
            print(f"model: {caution}")
    if written.demonstration_model:
        print(f"WARNING: {demo_warning()}", file=sys.stderr)
    return status
