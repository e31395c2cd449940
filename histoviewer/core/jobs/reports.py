"""The report job: a PDF, JSON and CSV tables of analysed slides, for ``histoviewer report``,
``histoviewer analyze --report`` and the export dialog's report of one slide.

The PDF writer is Qt code (``qt.report_pdf.write_report_pdf``), which the core cannot
import: the front end passes it in, with ``count_pages`` (``len(page_plan(report))``) when
it wants the page count.

Order and cancel: the PDF is written first (the long, cancellable step; the writer leaves
no file when cancelled), then the JSON and the CSV tables, with no cancel check after the
PDF: a cancel either stops the job before any file exists, or comes too late and every
file is written. So ``ExportCancelled`` always means "no file was written".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histoviewer.core.errors import ReportError
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.analysis.summary import SlideFailure
from histoviewer.core.report import (CaseReport, Report, build_report, failed_slide_report, find_analysis_dirs,
                                     load_slide_report, write_report_csv, write_report_json)
from histoviewer.core.report.model import failed_slides

__all__ = ["ReportFiles", "ReportPdfWriter", "write_report", "write_report_files"]

# (report, out_path, live={slide_path: (reader, heatmap)}, control) -> the PDF written
ReportPdfWriter = Callable[..., Path]
PageCounter = Callable[[Report], int]


@dataclass(frozen=True)
class ReportFiles:
    """What a report job wrote (None / empty: not asked for) and what the report says.

    ``cases``: the report's cases (patient, pN stage, provisional); ``pages``: the PDF's page
    count when a page counter was given; ``tables``: lesions.csv, slides.csv, cases.csv."""

    slides: int
    cases: tuple[CaseReport, ...]
    demonstration_model: bool
    pdf: Path | None = None
    pages: int | None = None
    json: Path | None = None
    tables: tuple[Path, ...] = ()
    model_cautions: tuple[str, ...] = ()  # what each model says of itself (Report.cautions)

    @property
    def unresolved(self) -> bool:
        """A node without a final label, or a case not staged (``stage``'s exit status 3)."""
        return any(c.unresolved or c.error for c in self.cases)

    def paths(self) -> list[Path]:
        """Every file written: the PDF, the JSON, the tables."""
        return [p for p in (self.pdf, self.json) if p is not None] + list(self.tables)

    def to_dict(self) -> dict[str, Any]:
        """For ``histoviewer report --print-json`` (keys present only for files written)."""
        out: dict[str, Any] = {"slides": self.slides,
                               "cases": [{"patient": c.patient, "stage": c.stage.value, "provisional": c.provisional,
                                          "stage_text": c.stage_text,
                                          "unresolved_nodes": [{"node": n, "reason": r} for n, r in c.unresolved]}
                                         for c in self.cases],
                               "demonstration_model": self.demonstration_model,
                               "model_cautions": list(self.model_cautions)}
        if self.json is not None:
            out["json"] = str(self.json)
        if self.tables:
            out["csv"] = [str(p) for p in self.tables]
        if self.pdf is not None:
            out["pdf"] = str(self.pdf)
            if self.pages is not None:
                out["pages"] = self.pages
        return out


def write_report_files(report: Report, pdf_path: str | os.PathLike[str] | None,
                       json_path: str | os.PathLike[str] | None, tables_dir: str | os.PathLike[str] | None,
                       *, write_report_pdf: ReportPdfWriter | None = None, count_pages: PageCounter | None = None,
                       live: Mapping[str, tuple[Any, Any]] | None = None,
                       control: JobControl = NO_CONTROL) -> ReportFiles:
    """Write ``report`` as the files asked for (None: not written); see the module docstring
    for the order and cancel. ``live``: ``{slide_path: (reader, HeatmapData)}`` for slides
    open in the viewer. Raises ``ReportError`` / ``ExportError`` (unwritable file, no PDF
    writer for a PDF) and ``Cancelled`` (from the PDF writer, before any file exists)."""
    pdf = pages = None
    if pdf_path is not None:
        if write_report_pdf is None:
            raise ReportError(f"{pdf_path}: no PDF writer to write the report with")
        pdf = Path(write_report_pdf(report, Path(pdf_path), live=live, control=control))
        pages = count_pages(report) if count_pages is not None else None
    # no cancel check from here: the PDF is complete, and a cancel now would leave it behind
    json_file = write_report_json(report, json_path) if json_path is not None else None
    tables = tuple(write_report_csv(report, tables_dir)) if tables_dir is not None else ()
    return ReportFiles(slides=len(report.slides), cases=tuple(report.cases), demonstration_model=report.demonstration,
                       pdf=pdf, pages=pages, json=json_file, tables=tables,
                       model_cautions=tuple(report.cautions))


def write_report(analysis_dirs: Iterable[str | os.PathLike[str]], pdf_path: str | os.PathLike[str] | None,
                 json_path: str | os.PathLike[str] | None, tables_dir: str | os.PathLike[str] | None, *,
                 write_report_pdf: ReportPdfWriter | None = None, count_pages: PageCounter | None = None,
                 control: JobControl = NO_CONTROL, failures: Iterable[SlideFailure] = ()) -> ReportFiles:
    """The report of every slide analysis under ``analysis_dirs`` (per-slide folders or
    ``analyze --out`` folders, whose ``cases.json`` names the slides that failed), plus the
    slides of ``failures`` (a run's failed slides, which have no folder), written as
    ``write_report_files`` does: every node is in the report, failed ones too."""
    paths = list(analysis_dirs)
    slides = ([load_slide_report(d) for d in find_analysis_dirs(paths)] + failed_slides(paths)
              + [failed_slide_report(f) for f in failures])
    return write_report_files(build_report(slides, [str(p) for p in paths]), pdf_path, json_path, tables_dir,
                              write_report_pdf=write_report_pdf, count_pages=count_pages, control=control)
