"""The slide summary panel: node label, largest lesion, lesion table, histograms, model.

Pure display: ``show_snapshot`` takes a ``LesionSnapshot`` (``live_lesions.py``) and the
panel says ``lesionActivated(index)`` when the user picks a lesion (click, Enter, double
click, Next/Previous); the main window flies the view there. A label computed before all
tissue was classified is always marked provisional with the coverage: a lesion can hide in
the unclassified rest, so a half-finished "NEGATIVE" must not read as a negative node.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView, QDockWidget, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSizePolicy, QTableView, QVBoxLayout, QWidget,
)

from histoviewer.core.analysis.lesions import Lesion, describe_size
from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON
from histoviewer.core.staging_terms import ITC_MAX_MM, MICRO_MAX_MM, NodeLabel, SizeClass
from histoviewer.qt.learned_text import learned_panel_text
from histoviewer.qt.lesion_layer import CLASS_COLOURS, CLASS_NAMES
from histoviewer.qt.live_lesions import HISTOGRAM_BINS, LesionSnapshot

LABEL_TEXT = {
    NodeLabel.NEGATIVE: ("NEGATIVE", "#1a6e1a"),
    NodeLabel.ITC: ("ITC (isolated tumour cells)", "#00789a"),
    NodeLabel.MICRO: ("MICROMETASTASIS", "#b86e00"),
    NodeLabel.MACRO: ("MACROMETASTASIS", "#b0105a"),
    NodeLabel.UNKNOWN: ("UNKNOWN (no scale on the slide)", "#555555"),
}
SIZE_BIN_MM = 0.1
OUT_OF_DOMAIN_COLOUR = "#8a1c1c"  # the headline when the tissue is unlike the model's training data
PLOT_HEIGHT_PX = 140


def label_text(label: NodeLabel) -> str:
    return LABEL_TEXT[label][0]


UNCERTAINTY_COLUMN = 6  # LesionTableModel's "Unc." column


def _uncertainty_text(les: Lesion) -> str:
    """'0.04/0.21' (TTA uncertainty mean/max), '-' when none was computed for the lesion."""
    if les.tta_uncertainty_max is None:
        return "-"
    return f"{les.tta_uncertainty_mean:.2f}/{les.tta_uncertainty_max:.2f}"


def _fmt(value: float | None, digits: int) -> str:
    return "unknown" if value is None else f"{value:.{digits}f}"


class LesionTableModel(QAbstractTableModel):
    """Rows are lesions (largest first); ``SORT_ROLE`` gives numbers so sorting is numeric."""

    # short headers: the dock is narrow; the tooltips say it in full
    HEADERS = ("Lesion", "\u2300 mm", "mm\u00b2", "Class", "P max", "P mean", "Unc.")
    TOOLTIPS = ("Lesion name (lesion-1 is the largest)", "Largest diameter (maximum Feret diameter), mm",
                "Area, mm\u00b2", "Size class: ITC \u2264 0.2 mm < micro \u2264 2.0 mm < macro",
                "Highest P(tumour) in the lesion", "Mean P(tumour) over the lesion's map cells",
                ("Uncertainty, mean / max over the lesion's cells: SD of P(tumour) over 8 rotations and "
                 "mirrors of each patch (AI > Uncertainty map); '-' where it was not computed"))
    SORT_ROLE = Qt.ItemDataRole.UserRole
    INDEX_ROLE = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.lesions: tuple[Lesion, ...] = ()

    def set_lesions(self, lesions: tuple[Lesion, ...]) -> None:
        self.beginResetModel()
        self.lesions = tuple(lesions)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.lesions)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: N802 - Qt override
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt override
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return self.TOOLTIPS[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        les = self.lesions[index.row()]
        col = index.column()
        if role == self.INDEX_ROLE:
            return les.index
        if role == Qt.ItemDataRole.DisplayRole:
            return (les.name, _fmt(les.diameter_mm, 2), _fmt(les.area_mm2, 3),
                    CLASS_NAMES[les.size_class] + (" (border)" if les.border else ""),
                    f"{les.max_probability:.2f}", f"{les.mean_probability:.2f}", _uncertainty_text(les))[col]
        if role == self.SORT_ROLE:
            size = (les.diameter_mm if les.diameter_mm is not None else les.l0_diameter)
            area = les.area_mm2 if les.area_mm2 is not None else 0.0
            return (les.index, size, area, size, les.max_probability, les.mean_probability,
                    -1.0 if les.tta_uncertainty_max is None else les.tta_uncertainty_max)[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 3:
            return CLASS_COLOURS[les.size_class].darker(150)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (1, 2, 4, 5, 6):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class SummaryPanel(QDockWidget):
    lesionActivated = Signal(int)  # lesion index (1 = largest): fly there

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Lesions and node label", parent)
        self.setObjectName("summary-panel")
        self.snapshot: LesionSnapshot | None = None
        body = QWidget(self)
        layout = QVBoxLayout(body)

        self.label_title = QLabel("")
        self.label_title.setWordWrap(True)
        layout.addWidget(self.label_title)
        self.coverage_label = QLabel("")
        self.coverage_label.setWordWrap(True)
        layout.addWidget(self.coverage_label)
        self.largest_label = QLabel("")
        self.largest_label.setWordWrap(True)
        layout.addWidget(self.largest_label)
        self.reviewed_label = QLabel("")  # the node label as reviewed (review_controller)
        self.reviewed_label.setWordWrap(True)
        self.reviewed_label.hide()
        layout.addWidget(self.reviewed_label)
        self.learned_label = QLabel("")  # the learned node classifier beside the rules (learned_text)
        self.learned_label.setWordWrap(True)
        layout.addWidget(self.learned_label)

        self.model = LesionTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(LesionTableModel.SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setColumnHidden(UNCERTAINTY_COLUMN, True)  # shown once an uncertainty map exists
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        # columns share the dock's width: no horizontal scroll bar hiding the probabilities
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setMinimumSectionSize(40)
        self.table.setMinimumHeight(140)
        self.table.clicked.connect(self._on_row_picked)
        self.table.activated.connect(self._on_row_picked)  # Enter, double click
        layout.addWidget(self.table, 1)

        buttons = QHBoxLayout()
        self.prev_button = QPushButton("\u25b2 Previous lesion")
        self.next_button = QPushButton("Next lesion \u25bc")
        self.prev_button.setToolTip("Fly to the previous lesion in the table (Ctrl+Shift+L)")
        self.next_button.setToolTip("Fly to the next lesion in the table (Ctrl+L)")
        self.prev_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(+1))
        buttons.addWidget(self.prev_button)
        buttons.addWidget(self.next_button)
        layout.addLayout(buttons)

        self.prob_plot = self._plot("P(tumour) of classified tissue", "P(tumour)", "cells (log)")
        self.prob_plot.setLogMode(x=False, y=True)
        layout.addWidget(self.prob_plot)
        self.size_plot = self._plot("Lesion sizes", "largest diameter (mm)", "lesions")
        layout.addWidget(self.size_plot)

        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        self.model_label.setTextFormat(Qt.TextFormat.PlainText)
        layout.addWidget(self.model_label)
        self.setWidget(body)
        self.setMinimumWidth(340)
        self.show_snapshot(None, "AI overlay off: no lesions.")

    @staticmethod
    def _plot(title: str, x_label: str, y_label: str) -> pg.PlotWidget:
        plot = pg.PlotWidget(background="w")
        plot.setFixedHeight(PLOT_HEIGHT_PX)
        # a plot's size hint is 600 px wide: it would push the dock over half a small window
        plot.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        item = plot.getPlotItem()
        item.setTitle(title, color="#222", size="9pt")
        item.setLabel("bottom", x_label, color="#333")
        item.setLabel("left", y_label, color="#333")
        for axis in ("bottom", "left"):
            item.getAxis(axis).setPen("#555")
            item.getAxis(axis).setTextPen("#333")
        item.setMenuEnabled(False)
        item.hideButtons()
        plot.setMouseEnabled(x=False, y=False)
        return plot

    # -- content ----------------------------------------------------------------------------------
    def show_reviewed(self, text: str, final: bool) -> None:
        """The node label as reviewed beside the AI's ("" hides it: nothing reviewed)."""
        self.reviewed_label.setText(f"As reviewed: {text}" if text else "")
        self.reviewed_label.setStyleSheet(f"font-weight: bold; color: {'#222' if final else '#a05a00'};")
        self.reviewed_label.setVisible(bool(text))

    def show_snapshot(self, snapshot: LesionSnapshot | None, status: str = "") -> None:
        """Show one slide's lesions; None shows ``status`` instead (overlay off, starting...)."""
        selected = self.selected_lesion()
        self.snapshot = snapshot
        if snapshot is None:
            self.label_title.setText("")
            self.label_title.setStyleSheet("")
            self.coverage_label.setText(status)
            self.coverage_label.setStyleSheet("color: #555;")
            self.largest_label.setText("")
            self.learned_label.setText("")
            self.model_label.setText("")
            self.model.set_lesions(())
            self.prob_plot.clear()
            self.size_plot.clear()
            self._update_buttons()
            return
        result = snapshot.result
        text, colour = LABEL_TEXT[result.label]
        self.label_title.setText(text)
        self.label_title.setStyleSheet(f"font-size: 20px; font-weight: bold; color: {colour};")
        if snapshot.domain.out_of_domain:  # no node label for tissue the model never learned
            self.label_title.setText(OUT_OF_DOMAIN_REASON)
            self.label_title.setStyleSheet(f"font-size: 16px; font-weight: bold; color: {OUT_OF_DOMAIN_COLOUR};")
        failed = result.counts.failed
        no_tissue = result.counts.tissue == 0 and not result.provisional
        if no_tissue and not snapshot.domain.out_of_domain:
            # nothing classified: "NEGATIVE" would rest on no tissue at all (a blank, tiny or
            # wrongly masked slide), the rule the final label follows (resolve_node_label)
            self.label_title.setText("NO LABEL \u2013 no tissue classified")
            self.label_title.setStyleSheet("font-size: 18px; font-weight: bold; color: #a05a00;")
            self.coverage_label.setText("no tissue found on the slide, so nothing was classified: "
                                        "this node has no label")
            self.coverage_label.setStyleSheet("color: #a05a00; font-weight: bold;")
        elif failed and not snapshot.domain.out_of_domain:  # failed tissue: no final label, ever
            self.label_title.setText(f"NOT FINAL \u2013 {text.lower()} so far")
            self.label_title.setStyleSheet("font-size: 18px; font-weight: bold; color: #a05a00;")
            self.coverage_label.setText(
                f"not final: {failed} of {result.counts.tissue} tissue patches failed (could not be read "
                f"or classified); {result.coverage:.0%} of the tissue classified \u2013 a lesion may hide "
                "in the failed patches, so this node has no final label")
            self.coverage_label.setStyleSheet("color: #a05a00; font-weight: bold;")
        elif result.provisional:
            self.coverage_label.setText(
                f"provisional: {result.coverage:.0%} of the tissue classified \u2013 a lesion may "
                "still be found in the rest")
            self.coverage_label.setStyleSheet("color: #a05a00; font-weight: bold;")
        elif result.counts.screened:  # every tissue patch classified or screened negative
            screened = result.counts.screened / max(result.counts.tissue, 1)
            self.coverage_label.setText(
                f"provisional (screened): {result.coverage:.0%} of the tissue classified; {screened:.0%} "
                "screened negative at 2.5x, not classified \u2013 a screen can miss tiny clusters")
            self.coverage_label.setStyleSheet("color: #a05a00; font-weight: bold;")
        else:
            self.coverage_label.setText("final: all tissue classified")
            self.coverage_label.setStyleSheet("color: #1a6e1a;")
        if status:
            self.coverage_label.setText(self.coverage_label.text() + f"\n{status}")
        largest = result.largest
        ood = snapshot.domain.out_of_domain
        # on tissue unlike the training data the regions are no metastases to stage: no size class
        self.table.setColumnHidden(LesionTableModel.HEADERS.index("Class"), ood)
        self.largest_label.setStyleSheet(f"color: {OUT_OF_DOMAIN_COLOUR}; font-weight: bold;" if ood else "")
        if largest is None:
            where = " in the classified tissue" if result.provisional else ""
            self.largest_label.setText(f"No lesion at P(tumour) \u2265 {result.params.threshold:.2f}{where}.")
        elif ood:
            self.largest_label.setText(
                f"{len(result.lesions)} region(s) at P \u2265 {result.params.threshold:.2f} (largest "
                f"{_fmt(largest.diameter_mm, 2)} mm): not to be read as metastases, and given no size "
                "class, on this tissue.")
        else:
            self.largest_label.setText(
                f"Largest lesion: {largest.name}, {describe_size(largest)}, max P {largest.max_probability:.2f}; "
                f"{len(result.lesions)} lesion(s) at P \u2265 {result.params.threshold:.2f}")
        if snapshot.scale_user_set and largest is not None:
            self.largest_label.setText(self.largest_label.text() + " \u2013 sizes from a user-set pixel size")
        learned_text, learned_style = learned_panel_text(snapshot.learned)
        self.learned_label.setText(learned_text)
        self.learned_label.setStyleSheet(learned_style)
        self.model.set_lesions(result.lesions)
        # the uncertainty column only while the slide has an uncertainty map (the dock stays narrow)
        self.table.setColumnHidden(UNCERTAINTY_COLUMN,
                                   all(les.tta_uncertainty_max is None for les in result.lesions))
        if selected is not None:
            self.select_lesion(selected)
        # the threshold the lesions were read at, what the model says of itself, and whether
        # the tissue lies inside what the model learned
        caution = snapshot.model_caution or ("" if not snapshot.demonstration else "demonstration model")
        model_text = f"Lesions at {snapshot.threshold_text}\nModel: {snapshot.model_name}" + (f"\n{caution}" if caution else "")
        if snapshot.domain.out_of_domain:  # the headline says what; this says on what evidence
            model_text += f"\nTissue check: {snapshot.domain.evidence()}"
        else:  # judged in domain, or not (yet) judged: say which, never silence
            model_text += f"\n{snapshot.domain.describe()}"
        self.model_label.setText(model_text)
        self.model_label.setStyleSheet("color: #a05a00; font-weight: bold;" if snapshot.demonstration
                                       else "color: #6a4a00;")
        self._plot_probabilities(snapshot, result.params.threshold)
        self._plot_sizes(result.lesions)
        self._update_buttons()

    def _plot_probabilities(self, snapshot: LesionSnapshot, threshold: float) -> None:
        plot = self.prob_plot
        plot.clear()
        edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
        # log axis: an empty bin is drawn at 1 cell's height less than one (0.5) rather than -inf
        counts = np.maximum(np.asarray(snapshot.probability_counts, float), 0.5)
        plot.plot(edges, counts, stepMode="center", fillLevel=np.log10(0.5),
                  brush=(70, 110, 190, 150), pen=pg.mkPen("#2a4d8f", width=1.5))
        plot.addItem(pg.InfiniteLine(threshold, angle=90, pen=pg.mkPen("#b0105a", width=1.5, style=Qt.PenStyle.DashLine)))
        plot.setXRange(0.0, 1.0, padding=0.02)
        # log axis in view units (log10); at least 0.5..10 cells, so an empty histogram (every
        # patch failed) is a flat floor, not a degenerate axis
        top = max(float(counts.max()), 10.0)
        plot.setYRange(np.log10(0.5), np.log10(top), padding=0.05)
        # decade ticks only: pyqtgraph labels the minor ticks (2..9, 0.5..0.9) of a log axis that
        # spans under two decades, and those labels pile on each other in a 110 px plot
        plot.getPlotItem().getAxis("left").setTicks([log_decade_ticks(top), []])

    def _plot_sizes(self, lesions: tuple[Lesion, ...]) -> None:
        plot = self.size_plot
        plot.clear()
        sizes = np.array([les.diameter_mm for les in lesions if les.diameter_mm is not None], float)
        top = max(2.5, float(np.ceil(sizes.max() / 0.5) * 0.5) if sizes.size else 0.0)
        edges = np.arange(0.0, top + SIZE_BIN_MM / 2, SIZE_BIN_MM)
        counts, _ = np.histogram(sizes, bins=edges)
        centres = (edges[:-1] + edges[1:]) / 2
        brushes = [_class_colour(c) for c in centres]
        plot.addItem(pg.BarGraphItem(x=centres, height=counts, width=SIZE_BIN_MM * 0.9, brushes=brushes,
                                     pen=pg.mkPen("#333", width=0.5)))
        # labels beside the border lines: the ITC one to the right (there is no room left of
        # 0.2 mm), the macro one to the left (its bar sits right of 2.0 mm)
        for border, text, anchor in ((ITC_MAX_MM, "ITC | micro", (0, 0)), (MICRO_MAX_MM, "micro | macro", (1, 0))):
            line = pg.InfiniteLine(border, angle=90, pen=pg.mkPen("#777", style=Qt.PenStyle.DashLine),
                                   label=text, labelOpts={"position": 0.97, "color": "#444", "anchors": [anchor, anchor]})
            plot.addItem(line)
        plot.setXRange(0.0, top, padding=0.02)
        # headroom above the bars for the border labels
        most = max(1, int(counts.max()) if counts.size else 1)
        plot.setYRange(0.0, most * 1.7, padding=0)
        # whole-number ticks: a count of lesions is never 1.5
        plot.getPlotItem().getAxis("left").setTicks([count_ticks(most), []])

    # -- selection --------------------------------------------------------------------------------
    def _on_row_picked(self, proxy_index: QModelIndex) -> None:
        if proxy_index.isValid():
            self.lesionActivated.emit(int(proxy_index.data(LesionTableModel.INDEX_ROLE)))

    def selected_lesion(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return int(rows[0].data(LesionTableModel.INDEX_ROLE)) if rows else None

    def select_lesion(self, lesion_index: int | None) -> None:
        """Select the row of ``lesion_index`` (no signal: the caller already flew there)."""
        self.table.clearSelection()
        if lesion_index is None:
            return
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if index.data(LesionTableModel.INDEX_ROLE) == lesion_index:
                self.table.selectRow(row)
                self.table.scrollTo(index)
                return

    def step(self, delta: int) -> None:
        """Fly to the next (+1) or previous (-1) lesion in the table's order, wrapping round."""
        n = self.proxy.rowCount()
        if n == 0:
            return
        rows = self.table.selectionModel().selectedRows()
        row = (rows[0].row() + delta) % n if rows else (0 if delta > 0 else n - 1)
        self.table.selectRow(row)
        self._on_row_picked(self.proxy.index(row, 0))

    def _update_buttons(self) -> None:
        has = self.proxy.rowCount() > 0
        self.prev_button.setEnabled(has)
        self.next_button.setEnabled(has)


def log_decade_ticks(top_count: float) -> list[tuple[float, str]]:
    """Ticks for a log10 count axis (positions in view units, log10 of the count): one per
    decade from 1 up to ``top_count``, labelled 1, 10, 100, 1k, 10k..."""
    ticks = []
    for power in range(int(np.floor(np.log10(max(top_count, 1.0)))) + 1):
        value = 10**power
        ticks.append((float(power), f"{value // 1000}k" if value >= 1000 else str(value)))
    return ticks


def count_ticks(most: int) -> list[tuple[float, str]]:
    """Whole-number ticks for a count axis from 0 to ``most``, at most about 5 of them."""
    step = max(1, int(np.ceil(most / 4)))
    return [(float(v), str(v)) for v in range(0, most + 1, step)]


def _class_colour(diameter_mm: float) -> QColor:
    cls = SizeClass.ITC if diameter_mm <= ITC_MAX_MM else SizeClass.MICRO if diameter_mm <= MICRO_MAX_MM else SizeClass.MACRO
    return CLASS_COLOURS[cls]
