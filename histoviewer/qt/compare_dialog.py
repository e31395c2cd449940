"""AI > Compare with model...: the slide's model (A) against another (B), on the slide itself.

The work is ``core.jobs.compare.compare_models`` (both analyses of the whole slide, the
difference map, the lesions each finds), run on a worker thread with progress and Cancel;
its folder is kept (the dialog names it) like the ``compare`` command's. When it is done
the slide view shows, over the slide, the difference map A - B (diverging colours: red A
higher, blue B higher, clear where they agree) or either model's map, toggled in the
dialog, with the lesions outlined by who found them and a legend on the view itself
(``compare_legend``: the scale, both models' names, the outline colours); the findings are listed (those of one
model alone and those with two size classes first) and a double-click flies to one.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import tifffile
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPolygonF, QRegion
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QRadioButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from histoviewer.core.analysis.lesion_match import (
    FOUND_BY_A,
    FOUND_BY_B,
    FOUND_BY_BOTH,
    Finding,
)
from histoviewer.core.analysis.map_io import read_probability_map
from histoviewer.core.colormaps import heatmap_rgba
from histoviewer.core.errors import Cancelled, HistoViewerError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.analyze import AnalyzeOptions
from histoviewer.core.jobs.compare import (
    SlideComparison,
    compare_models,
    difference_rgba,
    finding_colour,
    stated_label,
)
from histoviewer.core.models.registry import available_models, open_model
from histoviewer.core.progress import JobControl
from histoviewer.core.tiles.viewport import Viewport
from histoviewer.qt.heatmap_layer import draw_grid_image
from histoviewer.qt.compare_legend import (
    MODE_A,
    MODE_B,
    MODE_DIFFERENCE,
    CompareLegend,
)
from histoviewer.qt.threads import gui_thread

__all__ = ["MODE_A", "MODE_B", "MODE_DIFFERENCE", "CompareDialog", "CompareLayer"]

_WHO = {FOUND_BY_A: "A only", FOUND_BY_B: "B only", FOUND_BY_BOTH: "both"}


def _rgba_image(rgba: np.ndarray) -> QImage:
    rgba = np.ascontiguousarray(rgba)
    image = QImage(
        rgba.data,
        rgba.shape[1],
        rgba.shape[0],
        rgba.shape[1] * 4,
        QImage.Format.Format_RGBA8888,
    )
    return image.copy()  # owns its pixels


class CompareLayer:
    """Paints a comparison over the slide view: one per-cell image (the difference or a
    model's map) and the lesion outlines of both models, coloured by who found them."""

    def __init__(
        self,
        geometry: GridGeometry,
        images: dict[str, QImage],
        findings: tuple[Finding, ...],
    ) -> None:
        self.geometry = geometry
        self.images = images
        self.findings = findings
        self.mode = MODE_DIFFERENCE
        self.outlines = True

    def paint(self, painter: QPainter, viewport: Viewport, region: QRegion) -> None:
        painter.save()
        painter.setClipRegion(region)
        draw_grid_image(painter, viewport, self.geometry, self.images[self.mode])
        if self.outlines:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            for finding in self.findings:
                pen = QPen(QColor(*finding_colour(finding.found_by)), 3)
                pen.setCosmetic(True)
                painter.setPen(pen)
                for lesion in finding.a + finding.b:
                    points = [
                        QPointF(*viewport.l0_to_screen(x, y))
                        for x, y in lesion.l0_outline
                    ]
                    if len(points) >= 3:
                        painter.drawPolygon(QPolygonF(points))
        painter.restore()


class CompareDialog(QDialog):
    """See the module docstring. ``tab``: the slide tab (its view gets the layer);
    ``model_a``/``device``: the overlay's model and device."""

    def __init__(
        self, tab, model_a: str, device: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Compare with model - {Path(tab.path).name}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.tab, self.model_a, self.device = tab, model_a, device
        self.layer: CompareLayer | None = None
        self.view_legend: CompareLegend | None = (
            None  # on the slide view while the layer is
        )
        self.result: SlideComparison | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._build()

    # -- widgets --------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"A (the overlay's model): <b>{self.model_a}</b>"))
        row = QHBoxLayout()
        row.addWidget(QLabel("B:"))
        self.model_b = QComboBox()
        for found in available_models():
            if found.info is not None and found.key != self.model_a:
                self.model_b.addItem(f"{found.info.name} ({found.key})", found.key)
        self.model_b.addItem("Other model file\u2026", None)
        row.addWidget(self.model_b, 1)
        self.run_button = QPushButton("Compare")
        self.run_button.clicked.connect(self.start)
        row.addWidget(self.run_button)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.status = QLabel(
            "Both models classify the whole slide; this takes as long as two analyses."
        )
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        shows = QHBoxLayout()
        shows.addWidget(QLabel("Show over the slide:"))
        self.mode_group = QButtonGroup(self)
        for mode, text in (
            (MODE_DIFFERENCE, "A \u2212 B"),
            (MODE_A, "A"),
            (MODE_B, "B"),
        ):
            button = QRadioButton(text)
            button.setProperty("mode", mode)
            button.setChecked(mode == MODE_DIFFERENCE)
            self.mode_group.addButton(button)
            shows.addWidget(button)
        self.mode_group.buttonToggled.connect(self._on_mode)
        self.outlines = QCheckBox("lesion outlines")
        self.outlines.setChecked(True)
        self.outlines.toggled.connect(self._on_outlines)
        shows.addWidget(self.outlines)
        shows.addStretch(1)
        self.legend = QLabel(
            "<span style='color:#b2182b'>\u25a0</span> A higher &nbsp; <span style='color:#2166ac'>\u25a0</span> "
            "B higher &nbsp;|&nbsp; outlines: <span style='color:#ffb000'>\u25a1</span> both &nbsp;"
            "<span style='color:#dc1e1e'>\u25a1</span> A only &nbsp;<span style='color:#1e64eb'>\u25a1</span> B only"
        )
        layout.addLayout(shows)
        layout.addWidget(self.legend)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(
            ["Found by", "A", "B", "Where (level-0 px)"]
        )
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.Stretch
        )
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.cellDoubleClicked.connect(self._fly_to)
        layout.addWidget(self.table, 1)
        self._set_view_controls(False)
        self.resize(640, 480)

    def _set_view_controls(self, enabled: bool) -> None:
        for button in self.mode_group.buttons():
            button.setEnabled(enabled)
        self.outlines.setEnabled(enabled)

    # -- the work -------------------------------------------------------------------------------
    def _model_b_spec(self) -> str | None:
        spec = self.model_b.currentData()
        if spec is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Model B", "", "Model files (*.safetensors)"
            )
            return path or None
        return str(spec)

    def start(self, spec_b: str | None = None) -> None:
        """Compare with ``spec_b`` (default: the one chosen in the dialog)."""
        spec_b = spec_b or self._model_b_spec()
        if not spec_b or self._thread is not None:
            return
        self._remove_layer()
        self.table.setRowCount(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Comparing with {spec_b}\u2026")
        out = (
            Path(tempfile.mkdtemp(prefix="histoviewer-compare-"))
            / Path(self.tab.path).stem
        )
        self._cancel = threading.Event()
        control = JobControl(
            progress=lambda stage, done, total, _d: self._on_progress(
                stage, done, total
            ),
            cancel=self._cancel,
        )
        self._thread = threading.Thread(
            target=self._work,
            args=(spec_b, out, control),
            daemon=True,
            name="histoviewer-compare",
        )
        self._thread.start()

    def _work(self, spec_b: str, out: Path, control: JobControl) -> None:
        try:
            model_a = open_model(self.model_a, device=self.device)
            try:
                model_b = open_model(spec_b, device=self.device)
                try:
                    result = compare_models(
                        self.tab.path,
                        out,
                        model_a,
                        model_b,
                        AnalyzeOptions(device=self.device),
                        control=control,
                    )
                finally:
                    model_b.close()
            finally:
                model_a.close()
            images = self._cell_images(result)
        except Cancelled:
            shutil.rmtree(out.parent, ignore_errors=True)
            self._on_failed("Cancelled; nothing was kept.")
        except HistoViewerError as exc:
            self._on_failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - shown in the dialog, never a silent stop
            self._on_failed(f"{type(exc).__name__}: {exc}")
        else:
            self._on_done(result, images)

    @staticmethod
    def _cell_images(result: SlideComparison) -> dict[str, np.ndarray]:
        """Per-cell RGBA of the difference and of each model's map (its own colours)."""
        difference = tifffile.imread(Path(result.out_dir) / "difference.tiff")
        map_a, _ = read_probability_map(Path(result.files["a"]) / "probability.tiff")
        map_b, _ = read_probability_map(Path(result.files["b"]) / "probability.tiff")
        return {
            MODE_DIFFERENCE: difference_rgba(difference),
            MODE_A: heatmap_rgba(map_a, opacity=0.6),
            MODE_B: heatmap_rgba(map_b, opacity=0.6),
        }

    @gui_thread
    def _on_progress(self, stage: str, done: int, total: int) -> None:
        if self._thread is not None:
            self.status.setText(f"{stage}: {done:,} of {total:,} patches")

    @gui_thread
    def _on_failed(self, message: str) -> None:
        self._finish()
        self.status.setText(f"The comparison did not finish: {message}")

    @gui_thread
    def _on_done(self, result: SlideComparison, images: dict[str, np.ndarray]) -> None:
        self._finish()
        self.result = result
        b_drawn = True
        if result.a.geometry != result.b.geometry and not np.array_equal(
            images[MODE_A].shape, images[MODE_B].shape
        ):
            images[MODE_B] = (
                images[MODE_A] * 0
            )  # B on another grid: its map is in b/, not drawn here
            b_drawn = False
        self.layer = CompareLayer(
            result.a.geometry,
            {k: _rgba_image(v) for k, v in images.items()},
            result.findings,
        )
        self.layer.mode = self.mode_group.checkedButton().property("mode")
        self.layer.outlines = self.outlines.isChecked()
        self.tab.view.layers.append(self.layer)
        self.tab.view.update()
        self.view_legend = CompareLegend(
            self.tab.view, result.a.model.name, result.b.model.name, b_drawn=b_drawn
        )
        self.view_legend.set_state(self.layer.mode, self.layer.outlines)
        self.view_legend.show()
        self._set_view_controls(True)
        d = result.difference
        verdict = (
            "The two models agree."
            if result.agree
            else "<b>The two models disagree.</b>"
        )
        self.status.setText(
            f"A {result.a.model.name}: {stated_label(result.a)}, {len(result.a.lesions)} lesion(s); "
            f"B {result.b.model.name}: {stated_label(result.b)}, {len(result.b.lesions)} lesion(s). "
            f"Mean |A\u2212B| {d.mean_abs:.3f} on {d.cells:,} patches, {d.cells_apart:,} apart by 0.5 or more. "
            f"{verdict} Files: {result.out_dir}"
        )
        self._fill_table(result.findings)

    def _fill_table(self, findings: tuple[Finding, ...]) -> None:
        # disagreements first: one model alone, then two size classes, then agreement
        ordered = sorted(
            findings,
            key=lambda f: (
                f.found_by == FOUND_BY_BOTH and not f.classes_differ,
                f.found_by == FOUND_BY_BOTH,
            ),
        )
        self.table.setRowCount(len(ordered))

        def side(lesions) -> str:
            return (
                ", ".join(
                    f"{les.diameter_mm:.2f} mm {les.size_class.value}"
                    if les.diameter_mm is not None
                    else les.size_class.value
                    for les in lesions
                )
                or "\u2014"
            )

        for row, finding in enumerate(ordered):
            who = _WHO[finding.found_by] + (
                ", classes differ" if finding.classes_differ else ""
            )
            x, y = finding.l0_centroid
            cells = [who, side(finding.a), side(finding.b), f"{x:,.0f}, {y:,.0f}"]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 0:
                    item.setData(Qt.ItemDataRole.UserRole, (x, y))
                    item.setForeground(
                        QColor(*finding_colour(finding.found_by)).darker(130)
                    )
                self.table.setItem(row, col, item)

    def _fly_to(self, row: int, _col: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            x, y = item.data(Qt.ItemDataRole.UserRole)
            self.tab.view.center_on(x, y)

    def _finish(self) -> None:
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    # -- showing --------------------------------------------------------------------------------
    def _on_mode(self, button, checked: bool) -> None:
        if checked and self.layer is not None:
            self.layer.mode = button.property("mode")
            self._follow_legend()
            self.tab.view.update()

    def _on_outlines(self, checked: bool) -> None:
        if self.layer is not None:
            self.layer.outlines = checked
            self._follow_legend()
            self.tab.view.update()

    def _follow_legend(self) -> None:
        if self.view_legend is not None and self.layer is not None:
            self.view_legend.set_state(self.layer.mode, self.layer.outlines)

    def _remove_layer(self) -> None:
        if self.layer is not None and self.layer in self.tab.view.layers:
            self.tab.view.layers.remove(self.layer)
            self.tab.view.update()
        self.layer = None
        if self.view_legend is not None:
            self.view_legend.hide()
            self.view_legend.deleteLater()
            self.view_legend = None

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self) -> None:
        """Wait for the work in flight (tests; closing does it too)."""
        if self._thread is not None:
            self._thread.join()

    def closeEvent(self, event) -> None:
        self.cancel()
        self.wait()
        self._remove_layer()
        super().closeEvent(event)
