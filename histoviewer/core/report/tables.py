"""A report as files: ``report.json`` and three CSV tables.

- ``lesions.csv``: one row per lesion, with its patient and slide;
- ``slides.csv``: one row per slide (node label, coverage, largest lesion, model), failed
  ones too (label ``unknown``, ``unknown_reason`` says why, ``label_so_far`` the lower bound);
- ``cases.csv``: one row per patient (pN stage, what decided it, why; an unknown stage's
  lower bound and the unresolved nodes with why).

Cells: sizes in mm / mm^2, probabilities 0..1, positions in level-0 px. A size the slide's
missing scale makes unmeasurable is written ``unknown`` (never a guess); a value that does
not apply (no lesion on a slide) is empty. On a slide whose tissue is unlike the model's
training data a lesion's size class is written ``unreliable``: its region is no metastasis
to class (the PDF, the panel and the in-view labels give no class either). Text that a spreadsheet would run as a formula
(a slide named ``=cmd(...)``) is prefixed with a quote. Every file is written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from histoviewer.core.atomic import atomic_write_text
from histoviewer.core.csv_table import csv_cell, csv_text
from histoviewer.core.errors import ReportError
from histoviewer.core.report.model import LesionEntry, Report, SlideReport

__all__ = [
    "CASE_COLUMNS",
    "LESION_COLUMNS",
    "SLIDE_COLUMNS",
    "cases_csv",
    "lesions_csv",
    "slides_csv",
    "write_report_csv",
    "write_report_json",
]

UNKNOWN = "unknown"

LESION_COLUMNS = (
    "patient", "slide", "node_label", "lesion", "size_class", "diameter_mm", "area_mm2",
    "max_probability", "mean_probability", "map_cells", "centroid_x_l0", "centroid_y_l0",
    "bbox_x_l0", "bbox_y_l0", "bbox_w_l0", "bbox_h_l0", "mpp", "model", "model_hash", "demonstration_model",
    "diameter_low_mm", "diameter_high_mm", "size_class_border",
    "tta_uncertainty_mean", "tta_uncertainty_max",  # empty: no uncertainty map was computed
)
SLIDE_COLUMNS = (
    "patient", "slide", "node_label", "provisional", "coverage", "lesions", "largest_lesion",
    "largest_diameter_mm", "largest_size_class", "mpp", "width_l0", "height_l0", "threshold", "model",
    "model_hash", "demonstration_model", "analysed", "error", "threshold_source", "model_caution",
    "domain", "domain_score", "unknown_reason", "label_so_far", "tissue_patches", "classified_patches",
    "failed_patches", "label_as_reviewed", "hotspots", "hotspots_reviewed",
    "learned_label", "learned_probability", "learned_disagrees", "learned_classifier", "largest_size",
    "screened_negative_patches",
)
CASE_COLUMNS = (
    "patient", "pn_stage", "provisional", "nodes", "deciding_nodes", "deciding_lesions", "reason",
    "demonstration_model", "error", "pn_stage_at_least", "unresolved_nodes", "pn_stage_as_reviewed", "border_warning",
)
def _text(value: Any) -> str:
    return csv_cell(value)  # the one CSV writer's escaping: no cell is read as a formula


def _num(value: float | None, digits: int = 6, *, unknown: bool = False) -> str:
    """A number; ``None`` is "unknown" when the value exists but cannot be known, else empty."""
    if value is None:
        return UNKNOWN if unknown else ""
    return str(round(float(value), digits))


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    try:
        return csv_text(columns, rows)  # the one CSV writer (core.csv_table)
    except ValueError as exc:  # a programming error, caught by the tests
        raise ReportError(str(exc)) from exc


def _model(s: SlideReport) -> tuple[str, str, str]:
    return (_text(s.model.name), _text(s.model.content_hash or UNKNOWN),
            "yes" if s.demonstration else "no")


UNRELIABLE = "unreliable"


def _size_class(s: SlideReport, les: LesionEntry) -> str:
    return UNRELIABLE if s.domain.out_of_domain else les.size_class.value


def _border(s: SlideReport, les: LesionEntry) -> str:
    """"ITC/micro border" when the lesion's interval straddles a class border, else ""."""
    if s.domain.out_of_domain or not les.border:
        return ""
    text = les.size_text  # '0.205 mm (0.195-0.215 mm: ITC/micro border)'
    return _text(text[text.rindex(": ") + 2 : -1])


def lesions_csv(report: Report) -> str:
    rows = []
    for s in report.slides:
        for les in s.lesions:
            x, y, w, h = les.bbox_l0
            rows.append((_text(s.patient), _text(s.slide_name), s.node_label.value, les.name, _size_class(s, les),
                         _num(les.diameter_mm, unknown=True), _num(les.area_mm2, unknown=True),
                         _num(les.max_probability, 4), _num(les.mean_probability, 4), str(les.cells),
                         _num(les.centroid_l0[0], 1), _num(les.centroid_l0[1], 1), _num(x, 1), _num(y, 1),
                         _num(w, 1), _num(h, 1), _num(s.mpp, unknown=True), *_model(s),
                         _num(les.diameter_low_mm), _num(les.diameter_high_mm), _border(s, les),
                         _num(les.tta_uncertainty_mean, 4), _num(les.tta_uncertainty_max, 4)))
    return _table(LESION_COLUMNS, rows)


def _review_cells(s: SlideReport) -> tuple[str, str, str]:
    """The label as reviewed and the hotspot counts; empty without a review."""
    r = s.review
    if r is None:
        return "", "", ""
    if r.reviewed is None or r.progress is None:
        return _text(r.text), "", ""
    return _text(r.reviewed.text), str(r.progress.total), str(r.progress.reviewed)


def slides_csv(report: Report) -> str:
    rows = []
    for s in report.slides:
        big = s.largest
        rows.append((_text(s.patient), _text(s.slide_name), s.node_label.value, "yes" if s.provisional else "no",
                     _num(s.coverage, 4), str(len(s.lesions)), "" if big is None else big.name,
                     "" if big is None else _num(big.diameter_mm, unknown=True),
                     "" if big is None else _size_class(s, big), _num(s.mpp, unknown=True),
                     str(s.l0_size[0]), str(s.l0_size[1]), _num(s.threshold, 4), *_model(s), s.analysed,
                     _text(s.error), _text(s.threshold_source), _text(s.model.caution),
                     s.domain.status, _num(s.domain.score, 4), _text(s.unknown_reason),
                     s.resolution.label_so_far.value, str(s.tissue_patches), str(s.classified_patches),
                     str(s.failed_patches), *_review_cells(s), *_learned(s),
                     "" if big is None or s.domain.out_of_domain else _text(big.size_text),
                     str(s.screened_patches)))

    return _table(SLIDE_COLUMNS, rows)


def _learned(s: SlideReport) -> tuple[str, str, str, str]:
    """The learned classifier's label (``unknown`` when it may not be shown), its probability,
    whether it differs from the rule-based label, and the classifier; empty when none ran."""
    learned = s.learned
    if learned is None:
        return "", "", "", ""
    return (learned.label.value, _num(learned.confidence, 4, unknown=True), "yes" if learned.disagrees else "no",
            _text(f"{learned.classifier} ({learned.caution})" if learned.caution else learned.classifier))


def cases_csv(report: Report) -> str:
    rows = []
    for c in report.cases:
        demo = any(s.demonstration for s in report.slides_of(c))
        lesions = "; ".join(f"{n}:{les}" + ("" if d is None else f" {d:.3f} mm") for n, les, d in c.deciding_lesions)
        rows.append((_text(c.patient), c.stage.value, "yes" if c.provisional else "no", _text("; ".join(c.slides)),
                     _text("; ".join(c.deciding_nodes)), _text(lesions), _text(c.reason),
                     "yes" if demo else "no", _text(c.error), "" if c.at_least is None else c.at_least.value,
                     _text("; ".join(f"{n}: {why}" for n, why in c.unresolved)), _text(c.reviewed_stage), _text(c.border_warning)))
    return _table(CASE_COLUMNS, rows)


def write_report_json(report: Report, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    try:
        atomic_write_text(path, report.to_json() + "\n")
    except OSError as exc:
        raise ReportError(f"{path}: cannot write the report: {exc}") from exc
    return path


def write_report_csv(report: Report, folder: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """``lesions.csv``, ``slides.csv`` and ``cases.csv`` in ``folder``; returns their paths."""
    folder = Path(folder)
    out = (folder / "lesions.csv", folder / "slides.csv", folder / "cases.csv")
    try:
        for path, text in zip(out, (lesions_csv(report), slides_csv(report), cases_csv(report))):
            atomic_write_text(path, text)
    except OSError as exc:
        raise ReportError(f"{folder}: cannot write the report tables: {exc}") from exc
    return out
