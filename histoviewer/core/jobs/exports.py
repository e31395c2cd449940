"""One export of a slide's heatmap, as the export dialog and ``histoviewer export-heatmap``
ask for it: an ``ExportRequest`` in, ``run_export`` on a worker thread (or the CLI's), an
``ExportResult`` (or the report's ``ReportFiles``) out.

Kinds: ``heatmap`` (the map alone), ``overlay`` (the slide with the map blended over it;
``.png`` or, by extension, a pyramidal ``.tif``), ``pyramid`` (an overlay that must be a
TIFF), ``raw`` (float32 probabilities), ``report`` (PDF + JSON + CSV of the slide; the PDF
writer is Qt's, so the front end passes it in). Outlines drawn over image exports: the
request's ready-made ones (the viewer's open annotations), an annotation file's (read by
``load_annotations``) and, when asked, the AI lesions with their diameters.

Cancel (``control.cancel``) raises ``ExportCancelled``; no partial output file remains.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histoviewer.core.analysis.threshold import choose_threshold
from histoviewer.core.atomic import check_output, same_file
from histoviewer.core.colormaps import DEFAULT_COLORMAP
from histoviewer.core.errors import ExportError, OverwriteRefused
from histoviewer.core.export import (ExportResult, HeatmapData, HeatmapImageRequest, OverlayRequest,
                                     export_heatmap_image, export_overlay, export_raw_probabilities)
from histoviewer.core.export.exports import legend_path
from histoviewer.core.export.outline import Outline, outlines_from_annotation_file
from histoviewer.core.export.provenance import provenance_path
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.jobs.reports import ReportFiles, ReportPdfWriter, write_report_files
from histoviewer.core.report import build_report
from histoviewer.core.report.images import lesion_outline
from histoviewer.core.report.model import Report, slide_report_from_map
from histoviewer.core.slide import open_slide

__all__ = ["EXPORT_KINDS", "ExportRequest", "ReportPdfWriter", "analysis_files", "check_export_targets",
           "check_report_targets", "existing_targets", "export_targets", "request_inputs", "run_export"]

EXPORT_KINDS = ("overlay", "heatmap", "pyramid", "raw", "report")


@dataclass(frozen=True)
class ExportRequest:
    """Everything one export needs, captured when it is asked for (a worker never touches
    the viewer's widgets).

    ``overwrite``: existing output files may be replaced (the user said so); an input of
    the export (the slide, the annotation file, the analysis read) is never replaced.

    ``l0_region``: level-0 (x, y, width, height), None for the whole slide;
    ``output_mpp``: micrometres per output pixel, None for the kind's default size;
    ``threshold``: colour probabilities at or above it (set by the user), None for the kind's
    default: on overlays what the lesions use, the model's operating point (0.5 for a model
    that states none); 0 on the heatmap alone, whose legend marks the operating point; ``reader``: an open slide reader for overlays and the
    report's pictures (None: the slide file is opened for the export); ``lesion_outlines``: draw the
    AI lesions with their diameters; ``annotations_file``: a GeoJSON / ASAP XML file whose
    shapes are drawn; ``drawn_outlines``: outlines taken from the viewer's annotations.
    """

    kind: str
    out_path: Path
    slide_path: str
    heatmap: HeatmapData
    l0_region: tuple[float, float, float, float] | None = None
    output_mpp: float | None = None
    colormap: str = DEFAULT_COLORMAP
    opacity: float = 0.5
    threshold: float | None = None
    lesion_outlines: bool = False
    annotations_file: Path | None = None
    drawn_outlines: Sequence[Outline] = ()
    scale_bar: bool | None = None
    legend: bool = True
    record_full_slide_path: bool = False  # provenance names the slide's full path, not its file name
    reader: Any = field(default=None, compare=False)
    overwrite: bool = False
    node_classifier: str = "default"  # the learned label in a report (the viewer's choice)

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_path", Path(self.out_path))
        object.__setattr__(self, "drawn_outlines", tuple(self.drawn_outlines))
        if self.kind not in EXPORT_KINDS:
            raise ExportError(f"unknown export {self.kind!r}; choose one of {', '.join(EXPORT_KINDS)}")
        if self.kind == "pyramid" and self.out_path.suffix.lower() not in (".tif", ".tiff"):
            raise ExportError("a pyramidal TIFF needs a .tif or .tiff file name")

    def outlines(self) -> list[Outline]:
        """What is drawn over an image export (see the class docstring)."""
        out: list[Outline] = list(self.drawn_outlines)
        if self.annotations_file is not None:
            out += outlines_from_annotation_file(self.annotations_file, self.heatmap.geometry.slide_mpp)
        if self.lesion_outlines:
            slide = slide_report_from_map(self.slide_path, self.heatmap, node_classifier=self.node_classifier)
            for les in slide.lesions:
                size = ("size unknown" if les.diameter_mm is None
                        else f"{les.diameter_mm:.2f} mm ({les.size_class.value})")
                out.append(lesion_outline(les, f"{les.name} {size}"))
        return out

    def overlay_request(self) -> OverlayRequest:
        threshold, source = choose_threshold(self.threshold, self.heatmap.model.operating_point)
        return OverlayRequest(l0_region=self.l0_region, output_mpp=self.output_mpp, colormap=self.colormap,
                              threshold=threshold, threshold_source=source, outlines=self.outlines(),
                              scale_bar=self.scale_bar, legend=self.legend, opacity=self.opacity,
                              record_full_slide_path=self.record_full_slide_path)

    def heatmap_request(self) -> HeatmapImageRequest:
        source = "" if self.threshold is None else choose_threshold(self.threshold, None)[1]
        return HeatmapImageRequest(l0_region=self.l0_region, output_mpp=self.output_mpp, colormap=self.colormap,
                                   threshold=self.threshold or 0.0, threshold_source=source,
                                   outlines=self.outlines(),
                                   scale_bar=self.scale_bar, legend=self.legend, slide_path=str(self.slide_path),
                                   record_full_slide_path=self.record_full_slide_path)


def export_targets(kind: str, out_path: str | os.PathLike[str], *, legend: bool = True) -> tuple[Path, ...]:
    """Every file an export of ``kind`` to ``out_path`` writes (sidecars included); for a
    report, its tables folder comes last."""
    out = Path(out_path)
    if kind == "report":
        tables = out.with_name(out.stem + "-tables")
        return (out, out.with_suffix(".json"), tables / "lesions.csv", tables / "slides.csv",
                tables / "cases.csv")
    files = [out, provenance_path(out)]
    if kind != "raw" and legend and out.suffix.lower() in (".tif", ".tiff"):
        files.append(legend_path(out))
    return tuple(files)


def _analysis_inputs(origin: str) -> list[Path]:
    """The files of the analysis folder a map was read from (``origin`` "analysis:<folder>")."""
    if not origin.startswith("analysis:"):
        return []
    folder = Path(origin.split(":", 1)[1])
    try:
        return [folder, *folder.iterdir()] if folder.is_dir() else [folder]
    except OSError:
        return [folder]


def existing_targets(kind: str, out_path: str | os.PathLike[str], *, legend: bool = True) -> list[Path]:
    """The files an export would replace (what a front end asks about before replacing)."""
    return [p for p in export_targets(kind, out_path, legend=legend) if os.path.lexists(p)]


def check_export_targets(kind: str, out_path: str | os.PathLike[str], inputs: Iterable[Any], *,
                         overwrite: bool = False, legend: bool = True) -> None:
    """Refuse (``OverwriteRefused`` / ``WriteError``, before any work) an export that would
    write over one of its ``inputs`` (slide, annotation file, analysis files: never, by
    path, link or inode), over an existing file unless ``overwrite``, or onto a folder."""
    sources = [Path(p) for p in inputs if p is not None and str(p)]
    for target in export_targets(kind, out_path, legend=legend):
        check_output(target, inputs=sources, overwrite=overwrite)


def analysis_files(analysis_dirs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files a report reads: those of every slide folder (a folder with
    ``summary.json``) given or directly inside a given folder."""
    files: list[Path] = []
    for folder in map(Path, analysis_dirs):
        try:
            slides = [folder] if (folder / "summary.json").is_file() else [
                p for p in folder.iterdir() if (p / "summary.json").is_file()]
            for slide in slides:
                files += [slide, *slide.iterdir()]
        except OSError:
            continue  # an unreadable folder: the report's reader says so
    return files


def check_report_targets(pdf: str | os.PathLike[str] | None, json_path: str | os.PathLike[str] | None,
                         tables_dir: str | os.PathLike[str] | None, analysis_dirs: Iterable[Any], *,
                         overwrite: bool = False) -> None:
    """``check_export_targets`` for a report of analysis folders: never over a file of the
    analyses it reads, over an existing file only with ``overwrite``."""
    inputs = analysis_files(analysis_dirs)
    targets = [p for p in (pdf, json_path) if p is not None]
    if tables_dir is not None:
        # a slide's analysis folder: the report reads every file in it (a table written there
        # would be read as part of the analysis next time); say what to give instead
        if any(p.is_dir() and same_file(tables_dir, p) for p in inputs):
            raise OverwriteRefused(
                f"{tables_dir}: this is a slide's analysis folder, which the report reads; give "
                "another folder for lesions.csv, slides.csv and cases.csv (the analyze output "
                "folder above it, or a new one). Nothing was written")
        check_output(tables_dir, inputs=inputs, folder=True)
        targets += [Path(tables_dir) / name for name in ("lesions.csv", "slides.csv", "cases.csv")]
    for target in targets:
        check_output(target, inputs=inputs, overwrite=overwrite)


def request_inputs(r: ExportRequest) -> list[Any]:
    """What an export reads and must never write over: the slide, the annotation file, the
    analysis its map came from."""
    return [r.slide_path, r.annotations_file, *_analysis_inputs(r.heatmap.origin)]


def _with_reader(request: ExportRequest, work: Callable[[Any], Any]) -> Any:
    if request.reader is not None:
        return work(request.reader)
    with open_slide(request.slide_path) as reader:
        return work(reader)


def _report(request: ExportRequest, reader: Any, write_pdf: ReportPdfWriter, control: JobControl) -> ReportFiles:
    """The slide's report: the PDF (cancellable, atomic) first, then the JSON and tables with
    no cancel check after the PDF, so a cancel never leaves a file (``jobs.reports``)."""
    report: Report = build_report([slide_report_from_map(request.slide_path, request.heatmap,
                                                         node_classifier=request.node_classifier)])
    out = request.out_path
    live: Mapping[str, tuple[Any, HeatmapData]] = {request.slide_path: (reader, request.heatmap)}
    return write_report_files(report, out, out.with_suffix(".json"), out.with_name(out.stem + "-tables"),
                              write_report_pdf=write_pdf, live=live, control=control)


def run_export(request: ExportRequest, control: JobControl = NO_CONTROL, *,
               write_report_pdf: ReportPdfWriter | None = None) -> ExportResult | ReportFiles:
    """Do the export ``request`` describes (any thread but the GUI's); returns an
    ``ExportResult``, or for a report the ``ReportFiles`` written (PDF, JSON, CSV tables).
    ``write_report_pdf``: the PDF writer (``qt.report_pdf.write_report_pdf``), needed for
    reports only. Raises ``OverwriteRefused`` (an input or, unless ``request.overwrite``, an
    existing file would be replaced: checked before any work), ``WriteError`` (the disk
    refused a write; no partial file remains), ``ExportError`` (bad request) and
    ``ExportCancelled``."""
    r = request
    check_export_targets(r.kind, r.out_path, request_inputs(r), overwrite=r.overwrite, legend=r.legend)
    if r.kind == "raw":
        return export_raw_probabilities(r.out_path, r.heatmap, slide_path=r.slide_path, region=r.l0_region,
                                        record_full_slide_path=r.record_full_slide_path)
    if r.kind == "heatmap":
        return export_heatmap_image(r.out_path, r.heatmap, r.heatmap_request(), control=control)
    if r.kind == "report":
        if write_report_pdf is None:
            raise ExportError(f"{r.out_path}: no PDF writer to write the report with")
        return _report(r, r.reader, write_report_pdf, control)  # no reader: the report opens the slide
    overlay = r.overlay_request()
    return _with_reader(r, lambda reader: export_overlay(r.out_path, reader, r.heatmap, overlay, control=control))

