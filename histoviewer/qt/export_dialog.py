"""File > Export...: the exports of issue 7 for the slide tab on screen.

(a) the heatmap image with its legend, (b) the slide with the heatmap blended over it (the
current view, the whole slide or a typed region, at a chosen um/px, optionally with the
AI lesions' outlines and diameters and an annotation file's shapes), (c) the pyramidal
TIFF of that overlay, (d) the raw probabilities, (e) the PDF + JSON + CSV report of this
slide. The work is ``core.jobs.run_export`` (as ``histoviewer export-heatmap`` runs it) on a
worker thread; progress and the result come back through queued signals, Cancel sets the
export's cancel event (the core removes its partial file).

Entry point for the main window: ``open_export_dialog(parent, tab)``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton,
                               QRadioButton, QVBoxLayout, QWidget)

from histoviewer.core.analysis.lesions import DEFAULT_THRESHOLD
from histoviewer.core.colormaps import COLORMAPS, DEFAULT_COLORMAP, colormap_lut
from histoviewer.core.errors import ExportCancelled, HistoViewerError
from histoviewer.core.export import HeatmapData
from histoviewer.core.export.outline import outlines_from_document
from histoviewer.core.export.requests import parse_region
from histoviewer.core.jobs import ExportRequest, ReportFiles, run_export
from histoviewer.core.jobs.exports import check_export_targets, existing_targets, request_inputs
from histoviewer.core.paths import user_data_dir
from histoviewer.core.progress import JobControl
from histoviewer.qt.report_pdf import write_report_pdf
from histoviewer.qt.threads import gui_thread

__all__ = ["KINDS", "ExportDialog", "open_export_dialog"]

# kind -> (menu text, default suffix)
KINDS = {
    "overlay": ("Slide with heatmap overlay (PNG)", ".png"),
    "heatmap": ("Heatmap image with legend (PNG)", ".png"),
    "pyramid": ("Pyramidal TIFF of the overlay (opens in OpenSlide viewers)", ".tif"),
    "raw": ("Raw probabilities (float32 TIFF with geometry)", ".tiff"),
    "report": ("Report of this slide (PDF, with JSON and CSV beside it)", ".pdf"),
}


def _default_out_dir(slide_path: Path) -> Path:
    """Beside the slide when its folder is writable (where a pathologist looks for it), else
    ``<data dir>/exports``."""
    folder = slide_path.parent
    if folder.is_dir() and os.access(folder, os.W_OK):
        return folder
    return user_data_dir() / "exports"


def _colormap_name(lut: np.ndarray) -> str:
    """The exports' name of the overlay's colour table (the overlay uses the same maps)."""
    for name in COLORMAPS:
        if np.array_equal(colormap_lut(name), lut):
            return name
    return DEFAULT_COLORMAP


class ExportDialog(QDialog):
    """Export dialog for one ``SlideTab``. Signals: ``exported(object)`` with the result
    (``ExportResult`` or the report's ``ReportFiles``), ``failed(str)``, ``cancelled()``."""

    exported = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    progressed = Signal(int, int)  # done, total: the worker's progress, on the GUI thread

    def __init__(self, tab: Any, parent: QWidget | None = None,
                 out_dir: Path | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.tab = tab
        self._thread: threading.Thread | None = None
        self._busy = False  # an export started and its result has not come back to this thread
        self._cancel = threading.Event()
        self._t0 = 0.0
        self._out_dir = Path(out_dir) if out_dir is not None else _default_out_dir(Path(str(tab.path)))
        # asked before an existing file is replaced; tests put a stand-in here
        self.confirm_overwrite = self._ask_overwrite
        self._existing: list[Path] = []  # the files the export being started would replace
        self.error_box: QMessageBox | None = None  # the last failure's message box
        self._build()
        self._on_kind()

    # -- widgets ----------------------------------------------------------------------------------
    def _build(self) -> None:
        form = QFormLayout()
        self.kind = QComboBox(self)
        for key, (text, _suffix) in KINDS.items():
            self.kind.addItem(text, key)
        self.kind.currentIndexChanged.connect(self._on_kind)
        form.addRow("Export", self.kind)

        self.region_view = QRadioButton("Current view", self)
        self.region_slide = QRadioButton("Whole slide", self)
        self.region_typed = QRadioButton("Region (level-0 px):", self)
        self.region_text = QLineEdit(self)
        self.region_text.setPlaceholderText("x, y, width, height")
        self.region_view.setChecked(True)
        group = QButtonGroup(self)
        for b in (self.region_view, self.region_slide, self.region_typed):
            group.addButton(b)
        regions = QHBoxLayout()
        for w in (self.region_view, self.region_slide, self.region_typed, self.region_text):
            regions.addWidget(w)
        form.addRow("Region", regions)

        self.um_per_px = QDoubleSpinBox(self)
        self.um_per_px.setRange(0.0, 1000.0)
        self.um_per_px.setDecimals(3)
        self.um_per_px.setSingleStep(0.5)
        self.um_per_px.setSpecialValueText("auto (longer side up to 4096 px)")
        self.um_per_px.setSuffix(" \u00b5m/px")
        view_um_per_px = self._view_um_per_px()
        self.um_per_px.setValue(0.0 if view_um_per_px is None else view_um_per_px)  # 0: the "auto" entry
        form.addRow("Resolution", self.um_per_px)

        self.lesions = QCheckBox("AI lesion outlines with diameters", self)
        self.lesions.setChecked(True)
        form.addRow("Outlines", self.lesions)
        doc = getattr(self.tab, "annotations", None)
        self._drawn_count = len(doc.annotations()) if doc is not None else 0
        self.drawn = QCheckBox(f"this slide's annotations ({self._drawn_count})", self)
        self.drawn.setChecked(self._drawn_count > 0)
        self.drawn.setEnabled(self._drawn_count > 0)
        form.addRow("", self.drawn)
        self.annotations = QLineEdit(self)
        self.annotations.setPlaceholderText("optional GeoJSON or ASAP XML file")
        pick_ann = QPushButton("Choose\u2026", self)
        pick_ann.clicked.connect(self._choose_annotations)
        ann_row = QHBoxLayout()
        ann_row.addWidget(self.annotations)
        ann_row.addWidget(pick_ann)
        form.addRow("Annotations", ann_row)
        # Provenance names the slide by its file name unless asked: folder names can carry a
        # patient's or a hospital's name, and exports are made to be shared.
        self.full_path = QCheckBox("record the slide's full path (default: its file name only)", self)
        form.addRow("Provenance", self.full_path)

        self.path = QLineEdit(self)
        browse = QPushButton("Browse\u2026", self)
        browse.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path)
        path_row.addWidget(browse)
        form.addRow("Save as", path_row)

        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.export_button = QPushButton("Export", self)
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start_export)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_export)
        self.close_button = QPushButton("Close", self)
        self.close_button.clicked.connect(self.reject)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.export_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.setMinimumWidth(640)
        if self._heatmap_parts() is None:
            self.export_button.setEnabled(False)
            self.status.setText("Start the AI overlay (AI menu) first: every export draws its heatmap.")

    def _heatmap_parts(self):
        """(grid, model info) of the tab's live overlay, or None while it has none."""
        layer = getattr(self.tab, "heatmap", None)
        live = getattr(layer, "live", None)
        if live is None or live.grid is None or live.model is None:
            return None
        return live.grid, live.model.info

    def _mpp(self) -> float | None:
        return self.tab.session.info.mpp

    def _view_um_per_px(self) -> float | None:
        """What the view shows now: its level-0 px per screen px times the slide's scale
        (None when the scale is unknown)."""
        mpp = self._mpp()
        if mpp is None:
            return None
        return round(max(self.tab.view.viewport.l0_per_screen_px, 1.0) * mpp, 3)

    def _on_kind(self) -> None:
        key = self.kind.currentData()
        suffix = KINDS[key][1]
        text = self.path.text().strip()
        stem = Path(str(self.tab.path)).stem
        defaults = {f"{stem}-{k}" for k in KINDS}
        if not text or Path(text).stem in defaults:  # our own default name: follow the kind
            folder = Path(text).parent if text else self._out_dir
            self.path.setText(str(folder / f"{stem}-{key}{suffix}"))
        elif Path(text).suffix.lower() not in ((".png", ".tif", ".tiff") if key == "overlay" else (suffix,)):
            self.path.setText(str(Path(text).with_suffix(suffix)))  # the user's name, the kind's type
        slide_pixels = key in ("overlay", "pyramid", "heatmap")
        self.um_per_px.setEnabled(slide_pixels)
        self.lesions.setEnabled(slide_pixels)
        self.annotations.setEnabled(slide_pixels)
        self.drawn.setEnabled(slide_pixels and self._drawn_count > 0)
        regional = key != "report"
        for w in (self.region_view, self.region_slide, self.region_typed, self.region_text):
            w.setEnabled(regional)

    def _choose_annotations(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Annotations", str(self._out_dir),
                                              "Annotations (*.geojson *.json *.xml)")
        if path:
            self.annotations.setText(path)

    def _browse(self) -> None:
        key = self.kind.currentData()
        suffix = KINDS[key][1]
        filters = {".png": "PNG image (*.png);;TIFF (*.tif *.tiff)", ".tif": "TIFF (*.tif *.tiff)",
                   ".tiff": "TIFF (*.tif *.tiff)", ".pdf": "PDF (*.pdf)"}[suffix]
        path, _ = QFileDialog.getSaveFileName(self, "Export to", self.path.text(), filters)
        if path:
            self.path.setText(path)

    # -- running ----------------------------------------------------------------------------------
    def region(self) -> tuple[float, float, float, float] | None:
        if self.region_view.isChecked():
            return tuple(float(v) for v in self.tab.view.viewport.l0_xywh)  # type: ignore[return-value]
        if self.region_slide.isChecked():
            return None
        return parse_region(self.region_text.text())

    def request(self) -> ExportRequest:
        """The export the widgets describe (GUI thread); ``ValueError`` for bad input."""
        parts = self._heatmap_parts()
        if parts is None:
            raise ValueError("the AI overlay is not running on this slide")
        grid, info = parts
        heatmap = HeatmapData.from_grid(grid, info)  # a consistent snapshot of the live map
        key = self.kind.currentData()
        out = Path(self.path.text().strip()).expanduser()
        if not self.path.text().strip():
            raise ValueError("choose a file to save to")
        style = self.tab.heatmap.live.style
        # the overlay as shown: a colour threshold that is the model's operating point (or the
        # default, for a model that states none) is passed as None, so the export says so
        point = info.operating_point
        own = DEFAULT_THRESHOLD if point is None else float(point.threshold)
        user_threshold = None if abs(float(style.threshold) - own) < 5e-4 else float(style.threshold)
        ann = self.annotations.text().strip()
        return ExportRequest(
            kind=key, out_path=out, slide_path=str(self.tab.path), heatmap=heatmap,
            l0_region=None if key == "report" else self.region(),
            output_mpp=self.um_per_px.value() or None, colormap=_colormap_name(style.lut),
            opacity=float(style.opacity),
            # the heatmap alone colours every probability (the legend explains the states)
            threshold=None if key == "heatmap" else user_threshold,
            lesion_outlines=self.lesions.isChecked() and key != "raw",
            annotations_file=Path(ann).expanduser() if ann and key != "raw" else None,
            drawn_outlines=self._drawn_outlines() if key not in ("raw", "report") else (),
            record_full_slide_path=self.full_path.isChecked(),
            reader=self.tab.session.reader,
            # the AI settings' choice (LiveLesions holds it for the tab; a tab without one: shipped)
            node_classifier=getattr(getattr(self.tab, "lesions", None), "node_classifier", "default"))

    def _drawn_outlines(self) -> list:
        doc = getattr(self.tab, "annotations", None)
        if doc is None or not self.drawn.isChecked():
            return []
        return outlines_from_document(doc)

    @property
    def running(self) -> bool:
        """Started and its result not yet delivered here (not the thread's liveness: the worker
        is still returning for a moment after its result arrived, and Export must work then)."""
        return self._busy

    def start_export(self) -> bool:
        """Start the export the widgets describe; False (and a message) on bad input."""
        if self.running:
            return False
        try:
            req = self.request()
        except (ValueError, HistoViewerError) as exc:
            self.status.setText(f"Cannot export: {exc}")
            return False
        try:  # never over the slide or another input, whatever the user answers below
            check_export_targets(req.kind, req.out_path, request_inputs(req), overwrite=True, legend=req.legend)
        except HistoViewerError as exc:
            self.status.setText(f"Cannot export: {exc}")
            return False
        existing = self._existing = existing_targets(req.kind, req.out_path, legend=req.legend)
        if existing:
            if not self.confirm_overwrite(existing[0]):
                self.status.setText(f"Not exported: {existing[0].name} exists (choose another name).")
                return False
            req = dataclasses.replace(req, overwrite=True)
        self._cancel = threading.Event()
        control = JobControl(progress=self._relay_progress, cancel=self._cancel)
        self._set_running(True)
        self.status.setText(f"Exporting to {req.out_path}\u2026")
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._work, args=(req, control), name="histoviewer-export",
                                        daemon=True)
        self._thread.start()
        return True

    def _ask_overwrite(self, path: Path) -> bool:
        others = [p for p in self._existing if p != path]  # the export's sidecar files that exist too
        more = "".join(f"\n{p.name}" for p in others)
        text = f"{path} exists. Replace it?" + (f"\n\nAlso replaced:{more}" if more else "")
        answer = QMessageBox.question(self, "Replace file?", text,
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _relay_progress(self, _stage: str, done: int, total: int, _detail: str) -> None:
        self._on_progress(done, total)  # worker thread: gui_thread hops it

    def _work(self, req: ExportRequest, control: JobControl) -> None:
        try:
            result = run_export(req, control, write_report_pdf=write_report_pdf)
        except ExportCancelled:
            self._on_cancelled()
        except HistoViewerError as exc:
            self._on_failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - a worker must report, never die silently
            self._on_failed(f"{type(exc).__name__}: {exc}")
        else:
            self._on_done(result)

    def cancel_export(self) -> None:
        if self.running:
            self._cancel.set()
            self.status.setText("Cancelling\u2026")

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until the worker ends (tests, closing); True when it did."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def _set_running(self, running: bool) -> None:
        self._busy = running
        self.export_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.close_button.setEnabled(not running)
        self.kind.setEnabled(not running)
        if running:
            self.progress.setRange(0, 0)  # busy until the first count arrives

    # The worker's results: called on its thread, run on the GUI thread (qt/threads.py).
    @gui_thread
    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progressed.emit(done, total)

    @gui_thread
    def _on_done(self, result: Any) -> None:
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        seconds = time.perf_counter() - self._t0
        if isinstance(result, ReportFiles):
            lines = [f"Report written in {seconds:.1f} s:"] + [str(p) for p in result.paths()]
        else:
            w, h = result.size
            lines = [f"Saved {result.path} ({w} x {h} px, {seconds:.1f} s)"] + [f"  + {p}" for p in result.sidecars]
        self.status.setText("\n".join(lines))
        self.exported.emit(result)

    @gui_thread
    def _on_failed(self, message: str) -> None:
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText(f"Export failed: {message}")
        # a message box as well: a failed write (full disk, read-only folder) must not pass unseen;
        # open(), not exec(): window-modal without blocking the event loop
        box = QMessageBox(QMessageBox.Icon.Warning, "Export failed", f"Nothing was saved.\n\n{message}",
                          QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.error_box = box
        self.failed.emit(message)

    @gui_thread
    def _on_cancelled(self) -> None:
        self._set_running(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText("Cancelled: no file was written.")
        self.cancelled.emit()

    def done(self, code: int) -> None:  # noqa: D401 - Qt override: closing cancels a running export
        if self.running:
            self._cancel.set()
        self.wait()  # also the moment a finished worker needs to return
        super().done(code)


def open_export_dialog(parent: QWidget | None, tab: Any, *, out_dir: Path | None = None,
                       on_exported: Callable[[Any], None] | None = None) -> ExportDialog:
    """Show the export dialog for ``tab`` (a ``SlideTab``), window-modal, and return it.
    The dialog deletes itself when closed."""
    if hasattr(tab, "flush_annotations"):
        tab.flush_annotations()  # a report states the review decisions saved with the slide: all of them
    dialog = ExportDialog(tab, parent, out_dir=out_dir)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    if on_exported is not None:
        dialog.exported.connect(on_exported)
    dialog.open()
    return dialog
