"""The PDF report: one A4 page per slide, and a first case page when several slides form a
case. Drawn with ``QPdfWriter`` + ``QPainter`` (PySide6-Essentials), so it needs a
``QGuiApplication`` but no screen: ``ensure_gui_application`` makes an offscreen one for
the command line.

A slide's page: title (slide, patient, node), the demonstration-model warning in a box
when a demonstration model made the map, else the model's caveat (what it was trained on;
not validated for clinical use), the node label (provisional with its
coverage), the case's pN stage and what decided it, the thumbnail with the heatmap and the
numbered lesion outlines, the legend, snapshots of the largest lesions (outline and
diameter drawn), the lesion table, the size-class rules and the provenance. The pictures
come from ``core.report.images`` (the slide's pyramid, never its label or macro image).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QMarginsF, QPointF, QRectF, Qt
from PySide6.QtGui import (QColor, QFont, QFontMetricsF, QGuiApplication, QPageLayout, QPageSize, QPainter,
                           QPdfWriter, QPen)
from PySide6.QtWidgets import QApplication

from histoviewer.core.analysis.learned_label import LearnedLabel
from histoviewer.core.analysis.lesion_io import LESION_COLORS
from histoviewer.core.errors import ExportCancelled, ReportError, WriteError
from histoviewer.core.colormaps import DEFAULT_COLORMAP, colormap_lut
from histoviewer.core.atomic import atomic_target, write_error
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.progress import NO_CONTROL, JobControl
from histoviewer.core.report.images import SlideImages, fit_size, render_slide_images
from histoviewer.core.report.model import CaseReport, LesionEntry, Report, SlideReport
from histoviewer.core.staging_terms import NodeLabel
from histoviewer.qt.images import rgb_to_qimage

__all__ = ["ensure_gui_application", "page_plan", "write_report_pdf"]

DPI = 300
MARGIN_MM = 14.0
PAGE_W_MM, PAGE_H_MM = 210.0, 297.0
CONTENT_W_MM = PAGE_W_MM - 2 * MARGIN_MM
FONT_FAMILY = "DejaVu Sans"  # present wherever fontconfig is; Qt substitutes otherwise
LABEL_TEXT = {"negative": "Negative (no lesion found)", "itc": "Isolated tumour cells (ITC)",
              "micro": "Micrometastasis", "macro": "Macrometastasis",
              "unknown": "Unknown: no final label"}
SIZE_RULES = ("Size classes (AJCC 8th edition, CAMELYON17) by a lesion's largest diameter (maximum "
              "Feret diameter): isolated tumour cells (ITC) \u2264 0.2 mm; micrometastasis > 0.2 mm and "
              "\u2264 2.0 mm; macrometastasis > 2.0 mm. The node label is the class of its largest lesion. "
              "Lesions and diameters are measured on the AI probability map (one value per patch) and "
              "are estimates for the pathologist to check on the slide.")
PN_RULES = ("pN (CAMELYON17): pN0 no metastasis and no ITC; pN0(i+) ITC only; pN1mi micrometastases, "
            "no macrometastasis; pN1 metastases in 1\u20133 nodes, at least one macrometastasis; pN2 "
            "metastases in 4\u20139 nodes, at least one macrometastasis. ITC-only nodes are not positive nodes.")
WARN_FILL, WARN_EDGE = QColor(255, 235, 235), QColor(190, 0, 0)
GREY = QColor(90, 90, 90)
CAVEAT_COLOR = QColor(120, 70, 0)  # a model's caveat: not a warning box, but never grey

_APP: QGuiApplication | None = None


def ensure_gui_application() -> QGuiApplication:
    """The running Q(Gui)Application, or a new one on the offscreen platform (headless:
    the command line and tests). The platform is chosen before the application exists.
    A QApplication, not a bare QGuiApplication: widgets made later in the same process
    (a test session, a script that then opens the viewer) need one, and Qt allows only
    one application object."""
    global _APP
    app = QGuiApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = _APP = QApplication([])
    return app  # type: ignore[return-value]


def _mm(v: float) -> float:
    return v * DPI / 25.4


def _font(pt: float, bold: bool = False) -> QFont:
    f = QFont(FONT_FAMILY)
    f.setPointSizeF(pt)
    f.setBold(bold)
    # no ligatures: "tiff" must stay four letters when a file name is searched or copied
    f.setFeature(QFont.Tag("liga"), 0)
    return f


class _Page:
    """Draws on the current page in millimetres from the page's top-left content corner."""

    def __init__(self, painter: QPainter) -> None:
        self.p = painter
        self.y = 0.0  # mm, the flow cursor

    def rect(self, x: float, y: float, w: float, h: float) -> QRectF:
        return QRectF(_mm(x), _mm(y), _mm(w), _mm(h))

    def text_height(self, text: str, w: float, pt: float, bold: bool = False) -> float:
        self.p.setFont(_font(pt, bold))
        # measured with a pen set: with Qt.NoPen the painter reports a smaller text box
        self.p.setPen(QColor(0, 0, 0))
        r = self.p.boundingRect(self.rect(0, 0, w, 1000), int(Qt.TextFlag.TextWordWrap), text)
        return r.height() * 25.4 / DPI

    def text(self, x: float, y: float, w: float, text: str, pt: float = 9.5, bold: bool = False,
             color: QColor = QColor(0, 0, 0), align: Qt.AlignmentFlag = Qt.AlignmentFlag.AlignLeft) -> float:
        """Wrapped text in a column ``w`` mm wide; returns its height in mm."""
        h = self.text_height(text, w, pt, bold)
        self.p.setPen(color)
        self.p.drawText(self.rect(x, y, w, h + 1), int(Qt.TextFlag.TextWordWrap) | int(align), text)
        return h

    def line(self, text: str, pt: float = 9.5, bold: bool = False, color: QColor = QColor(0, 0, 0),
             gap: float = 1.0, x: float = 0.0, w: float = CONTENT_W_MM) -> None:
        self.y += self.text(x, self.y, w, text, pt, bold, color) + gap

    def elided(self, x: float, y: float, w: float, h: float, text: str, pt: float, bold: bool = False) -> None:
        """One line in the box, shortened with an ellipsis in the middle when too long."""
        f = _font(pt, bold)
        self.p.setFont(f)
        self.p.setPen(QColor(0, 0, 0))
        fm = QFontMetricsF(f, self.p.device())
        shown = fm.elidedText(text, Qt.TextElideMode.ElideMiddle, _mm(w))
        # a baseline of our own: centred in the box whatever the PDF engine does with rects
        baseline = _mm(y) + (_mm(h) - fm.ascent() - fm.descent()) / 2 + fm.ascent()
        self.p.drawText(QPointF(_mm(x), baseline), shown)

    def image(self, rgb: np.ndarray, x: float, y: float, box_w: float, box_h: float, frame: bool = True) -> tuple[float, float]:
        """The image fitted into the box (aspect kept, top-left aligned); returns its size in mm."""
        h_px, w_px = rgb.shape[:2]
        w, h = fit_size((w_px, h_px), (box_w, box_h))
        img, _ = rgb_to_qimage(rgb)
        target = self.rect(x, y, w, h)
        self.p.drawImage(target, img)
        if frame:
            self.p.setPen(QPen(QColor(120, 120, 120), _mm(0.2)))
            self.p.setBrush(Qt.BrushStyle.NoBrush)
            self.p.drawRect(target)
        return w, h

    def warning_box(self, text: str) -> None:
        title = "DEMONSTRATION MODEL \u2013 NOT FOR DIAGNOSIS"
        pad = 2.5
        inner = CONTENT_W_MM - 2 * pad
        h = self.text_height(title, inner, 11, True) + 1 + self.text_height(text, inner, 9) + 2 * pad
        self.p.setPen(QPen(WARN_EDGE, _mm(0.6)))
        self.p.setBrush(WARN_FILL)
        self.p.drawRect(self.rect(0, self.y, CONTENT_W_MM, h))
        self.p.setBrush(Qt.BrushStyle.NoBrush)
        ty = self.y + pad
        ty += self.text(pad, ty, inner, title, 11, True, WARN_EDGE) + 1
        self.text(pad, ty, inner, text, 9, False, QColor(110, 0, 0))
        self.y += h + 3

    def table(self, columns: Sequence[tuple[str, float]], rows: Sequence[Sequence[str]], pt: float = 8.5,
              max_bottom: float | None = None) -> int:
        """A ruled table (column titles and widths in mm, scaled to the content width);
        stops before ``max_bottom`` mm; returns how many rows it drew."""
        total = sum(w for _t, w in columns)
        widths = [w * CONTENT_W_MM / total for _t, w in columns]
        row_h = self.text_height("Ag", 100, pt) + 1.6
        self.p.setPen(Qt.PenStyle.NoPen)
        self.p.setBrush(QColor(230, 230, 230))
        self.p.drawRect(self.rect(0, self.y, CONTENT_W_MM, row_h))
        self._row([t for t, _w in columns], widths, pt, True, row_h)
        drawn = 0
        for i, row in enumerate(rows):
            if max_bottom is not None and self.y + row_h > max_bottom:
                break
            if i % 2:
                self.p.setPen(Qt.PenStyle.NoPen)
                self.p.setBrush(QColor(246, 246, 246))
                self.p.drawRect(self.rect(0, self.y, CONTENT_W_MM, row_h))
            self._row(row, widths, pt, False, row_h)
            drawn += 1
        self.p.setPen(QPen(QColor(150, 150, 150), _mm(0.2)))
        self.p.drawLine(self.rect(0, self.y, CONTENT_W_MM, 0).topLeft(), self.rect(0, self.y, CONTENT_W_MM, 0).topRight())
        self.y += 2
        return drawn

    def _row(self, cells: Sequence[str], widths: Sequence[float], pt: float, bold: bool, row_h: float) -> None:
        x = 0.0
        for cell, w in zip(cells, widths):
            self.elided(x + 1, self.y, w - 2, row_h, str(cell), pt, bold)
            x += w
        self.y += row_h


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%" if v < 0.995 or v >= 1.0 else "99%"  # never round 99.6% up to "100%"


def _coverage_text(s: SlideReport) -> str:
    if s.error:
        return f"Not analysed: {s.error}"
    if s.provisional:
        failed = (f" ({s.failed_patches} of {s.tissue_patches} tissue patches failed)"
                  if s.failed_patches else "")
        return (f"NOT FINAL: only {_pct(s.coverage)} of the tissue was classified{failed}; a lesion may "
                "hide in the rest, so the label may still go up.")
    if s.screened_patches:  # screened negative: looked at by the screen only, not classified
        return (f"Screened: {_pct(s.coverage)} of the tissue was classified; the other "
                f"{s.screened_patches} tissue patches were screened negative at low magnification and "
                "not classified (a screen can miss tiny tumour clusters).")
    return "Complete: all of the tissue was classified."


def _mm_text(v: float | None, digits: int = 2) -> str:
    return "unknown" if v is None else f"{v:.{digits}f}"


def _hash(h: str) -> str:
    return h[:12] + "\u2026" if len(h) > 12 else (h or "unknown")


def _provenance(report: Report, s: SlideReport | None, page: int, pages: int) -> str:
    parts = []
    if s is not None:
        m = s.model
        kind = f" ({m.kind})" if m.kind else ""
        parts += [f"Model {m.name}{kind}, hash {_hash(m.content_hash)}",
                  s.threshold_text,
                  f"slide scale {s.mpp:.4g} \u00b5m/px" if s.mpp is not None else "slide scale unknown",
                  f"analysed {s.analysed or 'unknown'}"]
    parts += [f"report {report.created} by {report.software} {report.software_version}",
              "label image not included", f"page {page} of {pages}"]
    return " \u00b7 ".join(parts)


def page_plan(report: Report) -> list[tuple[str, Any]]:
    """The pages in order: ("case", CaseReport) before the slides of a case with several
    slides, then ("slide", SlideReport) per slide."""
    plan: list[tuple[str, Any]] = []
    for case in report.cases:
        members = report.slides_of(case)
        if len(members) > 1:
            plan.append(("case", case))
        plan += [("slide", s) for s in members]
    return plan


def _footer(pg: _Page, report: Report, s: SlideReport | None, rules: str, page: int, pages: int) -> float:
    """Rules and provenance at the bottom of the content area; returns where they start (mm)."""
    content_h = PAGE_H_MM - 2 * MARGIN_MM
    prov = _provenance(report, s, page, pages)
    h = pg.text_height(rules, CONTENT_W_MM, 7.5) + 1.5 + pg.text_height(prov, CONTENT_W_MM, 7)
    top = content_h - h
    pg.p.setPen(QPen(QColor(150, 150, 150), _mm(0.2)))
    pg.p.drawLine(pg.rect(0, top - 1.5, CONTENT_W_MM, 0).topLeft(), pg.rect(0, top - 1.5, CONTENT_W_MM, 0).topRight())
    y = top + pg.text(0, top, CONTENT_W_MM, rules, 7.5, color=GREY) + 1.5
    pg.text(0, y, CONTENT_W_MM, prov, 7, color=GREY)
    return top - 3


def _header(pg: _Page, title: str, subtitle: str, models: Sequence[ModelRecord]) -> None:
    """``models``: the records of the models that made the page's maps: a demonstration
    model's warning in a box, any other model's caveat on a line of its own."""
    pg.line(title, 15, True, gap=0.5)
    pg.line(subtitle, 9, color=GREY, gap=3)
    warning = next((m.warning for m in models if m.warning), None)
    if warning is not None:
        pg.warning_box(warning)
    for caveat in dict.fromkeys(m.caution for m in models if not m.demonstration):
        pg.line(f"Model: {caveat}", 9, True, CAVEAT_COLOR, gap=2)


def _stage_line(case: CaseReport | None) -> str:
    if case is None:
        return ""
    return f"Case {case.patient}: {case.stage_text} \u2013 {case.reason}"


def _label_swatch(pg: _Page, label: NodeLabel, x: float, y: float) -> None:
    rgb = (255, 255, 255) if label is NodeLabel.NEGATIVE else LESION_COLORS.get(label.value)
    if rgb is None:
        return
    pg.p.setPen(QPen(QColor(0, 0, 0), _mm(0.2)))
    pg.p.setBrush(QColor(*rgb))
    pg.p.drawRect(pg.rect(x, y + 0.8, 4, 4))
    pg.p.setBrush(Qt.BrushStyle.NoBrush)


def _legend(pg: _Page, x: float, y: float, w: float, threshold: float) -> float:
    """The overlay's colour bar (the exports' colour map; grey below the threshold, where
    nothing is coloured) with ticks; returns its height in mm."""
    h = pg.text(x, y, w, f"Tumour probability (coloured at \u2265 {threshold:.2f})", 8.5, color=GREY) + 0.8
    lut = colormap_lut(DEFAULT_COLORMAP)
    n = 256
    bar = np.repeat(lut[np.linspace(0, 255, n).round().astype(np.intp)][None], 8, axis=0)
    bar[:, : int(round(threshold * (n - 1)))] = (225, 225, 225)
    pg.image(np.ascontiguousarray(bar), x, y + h, w, 3.5)
    ty = y + h + 3.5 + 0.5
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        tx = x + t * w
        pg.text(tx - 6 if 0 < t < 1 else (tx - 12 if t == 1 else tx), ty, 12, f"{t:g}", 7.5, color=GREY,
                align=Qt.AlignmentFlag.AlignHCenter if 0 < t < 1 else
                (Qt.AlignmentFlag.AlignRight if t == 1 else Qt.AlignmentFlag.AlignLeft))
    return h + 3.5 + 0.5 + pg.text_height("0", 10, 7.5)


def _draw_slide_page(pg: _Page, report: Report, s: SlideReport, images: SlideImages, page: int, pages: int) -> None:
    case = report.case_for(s)
    node = "" if s.node is None else f" \u00b7 node {s.node}"
    _header(pg, s.slide_name, f"Patient / case {s.patient}{node} \u00b7 HistoViewer slide report",
            () if s.error else (s.model,))
    bottom = _footer(pg, report, s, SIZE_RULES, page, pages)

    # row A: thumbnail left, results and legend right
    top = pg.y
    thumb_w = 104.0
    right_x, right_w = thumb_w + 5, CONTENT_W_MM - thumb_w - 5
    if images.thumbnail is not None:
        _w, th = pg.image(images.thumbnail, 0, top, thumb_w, thumb_w)
    else:
        th = pg.text(0, top, thumb_w, "No picture: neither the slide nor the analysis's heatmap.png "
                     "could be read.", 9, color=GREY)
    y = top
    y += pg.text(right_x, y, right_w, "Node label", 8.5, color=GREY)
    _label_swatch(pg, s.node_label, right_x, y)
    label_text = LABEL_TEXT.get(s.node_label, s.node_label.value)
    y += pg.text(right_x + 6, y, right_w - 6, label_text, 13, True) + 1
    if s.unknown_reason:  # unresolved: why, and what the classified tissue showed (a lower bound)
        y += pg.text(right_x, y, right_w, f"Why: {s.unknown_reason}", 9.5, True, WARN_EDGE) + 1
        so_far = s.resolution.label_so_far
        if so_far is not NodeLabel.UNKNOWN and not s.error:
            y += pg.text(right_x, y, right_w, f"So far (a lower bound, not a result): {so_far.value}",
                         9, color=WARN_EDGE) + 1
    if s.review is not None:  # the pathologist's decisions on the AI's hotspots (core/report/review.py)
        final = s.review.reviewed is not None and s.review.reviewed.final
        y += pg.text(right_x, y, right_w, f"As reviewed by the pathologist: {s.review.text}", 9.5, True,
                     QColor(0, 0, 0) if final else WARN_EDGE) + 1
    if s.learned is not None:  # the learned classifier's second opinion; the label above decides pN
        y += pg.text(right_x, y, right_w, learned_text(s.learned), 8.5, s.learned.disagrees,
                     WARN_EDGE if s.learned.disagrees else GREY) + 1
    if s.domain.assessed:
        y += pg.text(right_x, y, right_w, s.domain.describe(), 8.5, color=GREY) + 1
    cov_color = WARN_EDGE if (s.provisional or s.error) else QColor(0, 0, 0)
    y += pg.text(right_x, y, right_w, _coverage_text(s), 9, s.provisional, cov_color) + 2.5
    big = s.largest
    if big is not None:
        more = f"; {len(s.lesions)} lesions in all" if len(s.lesions) > 1 else ""
        # with its interval and "ITC/micro border" when it lies near a class border
        size = big.size_text if big.diameter_mm is not None else "size unknown (the slide states no scale)"
        if s.domain.out_of_domain and big.diameter_mm is not None:  # a region, not a metastasis to stage
            size = f"{big.diameter_mm:.2f} mm (no size class: AI result unreliable on this tissue)"
        y += pg.text(right_x, y, right_w, f"Largest lesion: {big.name}, {size}{more}.", 9) + 1
    elif not s.error:
        where = " in the classified tissue only (the rest was not examined)" if s.provisional else ""
        y += pg.text(right_x, y, right_w, f"No lesion at the threshold {s.threshold:.2f}{where}.", 9) + 1
    if not s.error:
        y += pg.text(right_x, y, right_w, f"Lesions at {s.threshold_text}.", 8, color=GREY) + 2.5
    if case is not None:
        n = len(case.slides)
        # The stage is only as complete as the nodes in this report (one slide exported from
        # the viewer is one node of the patient's): say how many it rests on.
        y += pg.text(right_x, y, right_w, f"Case pN stage, from the {n} node{'s' if n != 1 else ''} in this report",
                     8.5, color=GREY)
        y += pg.text(right_x, y, right_w, case.stage_text, 13, True) + 1
        if case.border_warning:  # a border lesion decides the stage: said, the stage unchanged
            y += pg.text(right_x, y, right_w, f"Caution: {case.border_warning}.", 8.5, True, WARN_EDGE) + 1
        y += pg.text(right_x, y, right_w, case.reason, 8.5) + 3
        if case.reviewed_stage is not None:
            y += pg.text(right_x, y, right_w, f"pN stage as reviewed: {case.reviewed_stage}", 10, True) + 3
    if images.heatmap_drawn and images.thumbnail_source == "slide":
        y += _legend(pg, right_x, y, right_w, s.threshold) + 2
    elif images.thumbnail_source == "heatmap.png":
        y += pg.text(right_x, y, right_w, "Thumbnail: the analysis's heatmap.png (viridis, all "
                     "probabilities coloured).", 8, color=GREY) + 2
    for note in images.notes:
        y += pg.text(right_x, y, right_w, f"Note: {note}", 8, color=GREY) + 1
    pg.y = max(top + th, y) + 4

    # row B: snapshots of the largest lesions
    if images.snapshots:
        n = len(images.snapshots)
        gap = 4.0
        w = min(58.0, (CONTENT_W_MM - gap * (n - 1)) / n)
        cap_h = 2 * pg.text_height("Ag", 50, 8) + 1
        w = min(w, bottom - pg.y - cap_h - 25)  # keep room for the table's header and a row
        for i, snap in enumerate(images.snapshots):
            x = i * (w + gap)
            _sw, sh = pg.image(snap.rgb, x, pg.y, w, w)
            les = snap.lesion
            scale = f", {snap.output_mpp:.2g} \u00b5m/px" if snap.output_mpp is not None else ""
            size = ("size unknown (no scale)" if les.diameter_mm is None
                    else les.size_text if les.border and not s.domain.out_of_domain
                    else f"{les.diameter_mm:.2f} mm, {les.size_class.value}")
            cap = f"{les.name}: {size}; max p {les.max_probability:.2f}{scale}"
            pg.text(x, pg.y + sh + 0.8, w, cap, 8)
        pg.y += w + cap_h + 3

    # lesion table (as many rows as fit; the CSV has all)
    if s.lesions:
        # room for a border lesion's class and interval: "micro (ITC/micro border)", "0.210 (0.190-0.230)"
        cols = (("Lesion", 14), ("Class", 32), ("Diameter mm", 29), ("Area mm\u00b2", 15), ("Max p", 11),
                ("Mean p", 11), ("Centre (level-0 px)", 28))
        rows = [(les.name, _class_cell(s, les), _diameter_cell(s, les), _mm_text(les.area_mm2, 4),
                 f"{les.max_probability:.2f}", f"{les.mean_probability:.2f}",
                 f"{les.centroid_l0[0]:.0f}, {les.centroid_l0[1]:.0f}") for les in s.lesions]
        if any(les.tta_uncertainty_max is not None for les in s.lesions):  # an uncertainty map was computed
            cols = (*cols[:6], ("Centre (level-0 px)", 26), ("Unc. mean/max", 22))
            rows = [(*row, "not computed" if les.tta_uncertainty_max is None
                     else f"{les.tta_uncertainty_mean:.3f} / {les.tta_uncertainty_max:.3f}")
                    for row, les in zip(rows, s.lesions, strict=True)]
        drawn = pg.table(cols, rows, max_bottom=bottom - 6)
        if drawn < len(rows):
            pg.line(f"\u2026 and {len(rows) - drawn} more lesion(s): see lesions.csv / report.json.", 8, color=GREY)
        if len(cols) > 7 and pg.y < bottom - 4:  # what the uncertainty column means
            pg.line("Unc.: test-time-augmentation uncertainty, how much P changes when the patches are rotated or mirrored "
                    "(standard deviation over 8 views; 0 = unchanged, 0.5 = at most).", 8, color=GREY)


def _near_border(s: SlideReport, les: LesionEntry) -> bool:
    return les.diameter_mm is not None and les.border and not s.domain.out_of_domain


def _diameter_cell(s: SlideReport, les: LesionEntry) -> str:
    """"0.350", or near a class border with its interval: "0.205 (0.195\u20130.215)"."""
    if not _near_border(s, les):
        return _mm_text(les.diameter_mm, 3)
    return f"{les.diameter_mm:.3f} ({les.diameter_low_mm:.3f}\u2013{les.diameter_high_mm:.3f})"


def _class_cell(s: SlideReport, les: LesionEntry) -> str:
    """"micro", or near a class border "micro (ITC/micro border)"."""
    if not _near_border(s, les):
        return les.size_class.value
    text = les.size_text  # '0.205 mm (0.195-0.215 mm: ITC/micro border)'
    return f"{les.size_class.value} ({text[text.rindex(': ') + 2 : -1]})"


def _draw_case_page(pg: _Page, report: Report, case: CaseReport, page: int, pages: int) -> None:
    members = report.slides_of(case)
    _header(pg, f"Case {case.patient}", f"{len(members)} lymph node slides \u00b7 HistoViewer case report",
            [s.model for s in members if not s.error])
    bottom = _footer(pg, report, members[0] if len(members) == 1 else None, PN_RULES + " " + SIZE_RULES,
                     page, pages)
    pg.line("pN stage", 9, color=GREY, gap=0)
    pg.line(case.stage_text, 24, True, gap=1)
    if case.reviewed_stage is not None:  # from the pathologist's review of the AI's hotspots
        pg.line(f"As reviewed: {case.reviewed_stage} – {case.reviewed_reason}", 11, True, gap=1.5)
    if case.unresolved:
        pg.line("NOT FINAL: " + "; ".join(f"{n} has no final label ({why})" for n, why in case.unresolved)
                + (". The stage is unknown: these nodes could change it." if case.provisional
                   else ". No label they could have changes the stage."), 9.5, True, WARN_EDGE, gap=1.5)
    if case.border_warning:  # a border lesion decides the stage: said, the stage unchanged
        pg.line(f"Caution: {case.border_warning}.", 9.5, True, WARN_EDGE, gap=1.5)
    pg.line(f"Why: {case.reason}", 10, gap=2)
    if case.deciding_lesions:
        text = "; ".join(f"{n} {les}" + ("" if d is None else f" ({d:.2f} mm)") for n, les, d in case.deciding_lesions)
        pg.line(f"Deciding lesions: {text}", 9.5, gap=4)
    else:
        pg.y += 3
    rows = []
    for s in members:
        big = s.largest
        rows.append((s.slide_name, s.node_label.value, "yes" if s.provisional else "no", _pct(s.coverage),
                     str(len(s.lesions)), "" if big is None else big.name,
                     "" if big is None else _mm_text(big.diameter_mm),
                     "yes" if s.slide_name in case.deciding_nodes else "", _learned_cell(s)))
    # widths (mm before scaling to the page) fit the bold titles at 8.5 pt
    cols = (("Node (slide)", 44), ("Label", 16), ("Provisional", 21), ("Classified", 19), ("Lesions", 15),
            ("Largest", 16), ("Diameter mm", 25), ("Decides", 15), ("Learned", 20))
    pg.table(cols, rows, pt=8.5, max_bottom=bottom)


def learned_text(learned: LearnedLabel) -> str:
    """The learned classifier's line on a slide page: its label beside the rule-based one."""
    caution = f", {learned.caution}" if learned.caution else ""
    return (f"Learned classifier ({learned.classifier}{caution}): {learned.describe()}. "
            "The rule-based label above decides the stage.")


def _learned_cell(s: SlideReport) -> str:
    """The case table's learned label: the label, '!' where it differs from the rules."""
    if s.learned is None:
        return ""
    if not s.learned.shown:
        return "none"
    return s.learned.label.value + (" (!)" if s.learned.disagrees else "")


def write_report_pdf(
    report: Report,
    out_path: str | os.PathLike[str],
    *,
    images: Callable[[SlideReport], SlideImages] | None = None,
    live: Mapping[str, tuple[Any, Any]] | None = None,
    control: JobControl = NO_CONTROL,
) -> Path:
    """Write the report as a PDF, atomically (no file remains on error or cancel).

    ``live``: ``{slide_path: (reader, HeatmapData)}`` for slides open in the viewer (their
    pictures use that reader and map); other slides open their file and read their
    analysis folder. ``images``: replaces the picture renderer (tests). ``control``:
    progress in pages, cancel between pages and snapshots.
    """
    ensure_gui_application()
    if not report.slides:
        raise ReportError(f"{out_path}: the report has no slides")
    live = dict(live or {})

    def render(s: SlideReport) -> SlideImages:
        reader, heatmap = live.get(s.slide_path, (None, None))
        return render_slide_images(s, reader=reader, heatmap=heatmap, control=control)

    images = images or render
    plan = page_plan(report)
    out_path = Path(out_path)
    with atomic_target(out_path) as tmp:
        writer = QPdfWriter(str(tmp))
        writer.setResolution(DPI)
        writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                         QMarginsF(MARGIN_MM, MARGIN_MM, MARGIN_MM, MARGIN_MM),
                                         QPageLayout.Unit.Millimeter))
        writer.setTitle(f"HistoViewer report: {', '.join(c.patient for c in report.cases)}")
        writer.setCreator(f"{report.software} {report.software_version}")
        painter = QPainter()
        if not painter.begin(writer):
            raise ReportError(f"{out_path}: cannot write a PDF here")
        try:
            control.report("Writing the report", 0, len(plan))
            for i, (kind, item) in enumerate(plan):
                control.check("report", ExportCancelled)
                if i:
                    writer.newPage()
                pg = _Page(painter)
                if kind == "case":
                    _draw_case_page(pg, report, item, i + 1, len(plan))
                else:
                    _draw_slide_page(pg, report, item, images(item), i + 1, len(plan))
                control.report("Writing the report", i + 1, len(plan))
        except BaseException:
            painter.end()
            raise
        if not painter.end():
            raise WriteError(f"{out_path}: cannot write: the PDF writer failed")
        del painter, writer  # the writer closes its file when it goes
        check_pdf_complete(tmp, out_path)
    return out_path


def check_pdf_complete(tmp: Path, out_path: Path) -> None:
    """``WriteError`` unless ``tmp`` is a whole PDF (header, and the end-of-file marker in
    its last bytes). Qt's PDF writer ignores its file's write errors (a full disk gives a
    truncated file and a painter that ends well), so the file is checked before it
    replaces ``out_path``."""
    try:
        size = tmp.stat().st_size
        with open(tmp, "rb") as fh:
            head = fh.read(5)
            fh.seek(max(0, size - 1024))
            tail = fh.read()
    except OSError as exc:
        raise write_error(out_path, exc) from exc
    if head == b"%PDF-" and b"%%EOF" in tail:
        return
    try:
        full = shutil.disk_usage(tmp.parent).free < 1 << 20
    except OSError:
        full = False
    reason = "the disk is full" if full else "the PDF came out incomplete (full disk or a file size limit?)"
    raise WriteError(f"{out_path}: cannot write: {reason}; nothing was written")
