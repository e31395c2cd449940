"""The uncertainty map in the main window: its menu (AI > Uncertainty map), its per-slide
layer and legend, and a status-bar progress bar with a Cancel button.

The map is computed on request only (8x the model work of the heatmap): for the view, for
the selected annotation's bounding box, or for the whole slide. It needs the AI overlay to
run (it uses the overlay's model and grid); when the overlay restarts with another model or
grid, the slide's uncertainty map is dropped (it described the old one). Requests run on
the layer's job thread; the GUI never waits for them.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMenu,
    QProgressBar,
    QToolButton,
    QWidget,
)

from histoviewer.core.errors import HistoViewerError
from histoviewer.core.export.source import HeatmapData
from histoviewer.core.export.uncertainty import (
    UncertaintyExport,
    export_uncertainty_map,
)
from histoviewer.core.inference.uncertainty_live import UncertaintyOutcome
from histoviewer.core.inference.uncertainty_map import uncertainty_caveat
from histoviewer.core.models.record import ModelRecord
from histoviewer.qt.actions import make_action
from histoviewer.qt.slide_tab import LEGEND_MARGIN, SlideTab
from histoviewer.qt.uncertainty_layer import UncertaintyLayer, UncertaintyLegend
from histoviewer.qt.window_host import TabHost

__all__ = ["UncertaintyController"]

VIEW, REGION, SLIDE = "view", "selected region", "whole slide"


class UncertaintyController(QObject):
    """See the module docstring. ``model_spec``/``device`` of a tab's overlay come from its
    ``LiveHeatmap.options``."""

    def __init__(self, host: TabHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.layers: dict[SlideTab, UncertaintyLayer] = {}
        self.legends: dict[SlideTab, UncertaintyLegend] = {}
        self.menu = QMenu("&Uncertainty map", parent)
        self.show_action = make_action(
            self.menu,
            "&Show uncertainty map",
            self._toggle_show,
            shortcut="Shift+U",  # U alone is the review queue's "unsure"
            checked=True,
            menu=self.menu,
        )
        self.menu.addSeparator()
        self.view_action = make_action(
            self.menu,
            "Compute for the &view",
            lambda: self.compute(VIEW),
            menu=self.menu,
        )
        self.region_action = make_action(
            self.menu,
            "Compute for the selected &annotation's area",
            lambda: self.compute(REGION),
            menu=self.menu,
        )
        self.slide_action = make_action(
            self.menu,
            "Compute for the &whole slide",
            lambda: self.compute(SLIDE),
            menu=self.menu,
        )
        self.cancel_action = make_action(
            self.menu, "&Cancel", self.cancel, menu=self.menu
        )
        self.menu.addSeparator()
        self.export_action = make_action(
            self.menu,
            "&Export uncertainty map\u2026",
            self.export_dialog,
            menu=self.menu,
        )
        self.menu.setToolTipsVisible(True)
        self.menu.setToolTip(
            "How much P(tumour) changes when each patch is rotated or mirrored "
            "(8 views): where it does, do not trust the colour. 8x the work of the heatmap."
        )
        self.menu.aboutToShow.connect(self._update_actions)
        # status bar: the running request, its progress and a cancel button; hover value
        self.status_label = QLabel("", parent)
        self.progress_bar = QProgressBar(parent)
        self.progress_bar.setMaximumWidth(140)
        # no taller than the status bar's labels: the bar's height (and so the view's) stays as it was
        line_h = self.progress_bar.fontMetrics().height() + 2
        self.progress_bar.setMaximumHeight(line_h)
        self.progress_bar.setFormat("%p%")
        self.cancel_button = QToolButton(parent)
        self.cancel_button.setText("Cancel")
        self.cancel_button.setToolTip(
            "Stop computing the uncertainty map (what is done stays)"
        )
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setMaximumHeight(line_h)
        self.hover_label = QLabel("", parent)
        self.last_outcome: UncertaintyOutcome | None = None
        self._show_running(False)
        host.currentTabChanged.connect(lambda _tab: self._update_actions())

    @property
    def status_widgets(self) -> tuple[QWidget, ...]:
        return (
            self.status_label,
            self.progress_bar,
            self.cancel_button,
            self.hover_label,
        )

    def _menu_actions(self) -> tuple[QAction, ...]:
        return (
            self.show_action,
            self.view_action,
            self.region_action,
            self.slide_action,
            self.cancel_action,
        )

    # -- slides ---------------------------------------------------------------------------------
    def attach(self, tab: SlideTab) -> None:
        tab.heatmapChanged.connect(lambda t=tab: self._follow_heatmap(t))
        tab.view.cursorMoved.connect(
            lambda l0_pos, t=tab: self._on_cursor_moved(t, l0_pos)
        )
        tab.view.installEventFilter(self)
        tab.legend.heightChanged.connect(lambda t=tab: self._place_legend(t))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize:
            for tab in self.legends:
                if tab.view is watched:
                    self._place_legend(tab)
        return False

    def _place_legend(self, tab: SlideTab) -> None:
        legend = self.legends.get(tab)
        if legend is None:
            return
        view = tab.view
        above = (
            tab.legend.height() + 2 * LEGEND_MARGIN
            if tab.legend.isVisible()
            else LEGEND_MARGIN
        )
        legend.move(
            view.width() - legend.width() - LEGEND_MARGIN,
            view.height() - above - legend.height(),
        )

    def _follow_heatmap(self, tab: SlideTab) -> None:
        """Drop the slide's uncertainty map when its overlay stopped or restarted (another
        model or grid: the map described the old one). Runs on every heatmap change: cheap."""
        layer = self.layers.get(tab)
        if layer is None:
            return
        heatmap = tab.heatmap
        if heatmap is None or heatmap.live.grid is not layer.source_grid:
            self.drop(tab)
        else:
            self._place_legend(tab)  # the heatmap legend may have appeared or grown

    def drop(self, tab: SlideTab) -> None:
        """Stop and remove the slide's uncertainty map (its job first: it reads the slide)."""
        layer = self.layers.pop(tab, None)
        legend = self.legends.pop(tab, None)
        tab.uncertainty_grid = None
        if layer is not None:
            if layer in tab.view.layers:
                tab.view.layers.remove(layer)
            layer.close()
            layer.deleteLater()
            tab.view.update()
        if legend is not None:
            legend.hide()
            legend.deleteLater()
        self._show_running(any(lay.live.busy for lay in self.layers.values()))

    def _layer_for(self, tab: SlideTab) -> UncertaintyLayer | None:
        """The slide's layer, made on first use; None (with a message) when the overlay has
        no model and grid yet."""
        layer = self.layers.get(tab)
        if layer is not None:
            return layer
        heatmap = tab.heatmap
        live = None if heatmap is None else heatmap.live
        if live is None or live.grid is None or live.model is None:
            why = (
                "the AI overlay is off: turn it on (AI > Classify tissue in view) first"
                if heatmap is None
                else "the AI overlay is still starting; try again when its heatmap shows"
            )
            self.host.show_message(f"No uncertainty map: {why}", 8000)
            return None
        point = live.model.info.operating_point
        layer = UncertaintyLayer(
            tab.path,
            tab.session.reader,
            live.grid,
            live.options.model,
            live.options.device,
            threshold=None if point is None else float(point.threshold),
            parent=self,
        )
        layer.visible = self.show_action.isChecked()
        layer.progress.connect(
            lambda done, total, t=tab: self._on_progress(t, done, total)
        )
        layer.updated.connect(lambda l0_rect, t=tab: self._on_updated(t, l0_rect))
        layer.finished.connect(lambda outcome, t=tab: self._on_finished(t, outcome))
        layers = tab.view.layers
        at = layers.index(heatmap) + 1 if heatmap in layers else 0
        layers.insert(at, layer)  # above the heatmap, under lesions and annotations
        self.layers[tab] = layer
        tab.uncertainty_grid = (
            layer.live.grid
        )  # the lesion table reads each lesion's uncertainty
        legend = UncertaintyLegend(tab.view)
        legend.set_caveat(
            uncertainty_caveat(live.model.info.kind)
        )  # a map blind by construction says so
        legend.setVisible(layer.visible)
        self.legends[tab] = legend
        self._place_legend(tab)
        return layer

    # -- requests -------------------------------------------------------------------------------
    def rect_for(
        self, tab: SlideTab, what: str
    ) -> tuple[float, float, float, float] | None:
        """The level-0 (x, y, w, h) of a request; None for the whole slide. ValueError with a
        sentence when a region is asked for and no annotation is selected."""
        if what == VIEW:
            return tuple(tab.view.viewport.l0_xywh)
        if what == REGION:
            uid = tab.annotation_tools.selected
            if uid is None or uid not in tab.annotations:
                raise ValueError(
                    "select an annotation first (its bounding box is computed)"
                )
            x0, y0, x1, y1 = tab.annotations.get(uid).l0_bounds()
            return x0, y0, x1 - x0, y1 - y0
        return None

    def compute(self, what: str) -> bool:
        """Start a request on the slide in front; False (with a message) when it cannot."""
        tab = self.host.current_tab()
        if tab is None:
            return False
        try:
            rect = self.rect_for(tab, what)
        except ValueError as exc:
            self.host.show_message(f"No uncertainty map of a region: {exc}", 8000)
            return False
        layer = self._layer_for(tab)
        if layer is None:
            return False
        if not layer.live.request(what, rect):
            self.host.show_message(
                "The uncertainty map is already being computed: wait or cancel it", 6000
            )
            return False
        if not self.show_action.isChecked():
            self.show_action.setChecked(True)
            self._toggle_show(True)
        self.status_label.setText(f"Uncertainty ({what}): starting\u2026")
        self.progress_bar.setRange(0, 0)  # busy until the first count
        self._show_running(True)
        self._update_actions()
        return True

    def export_dialog(self) -> None:
        tab = self.host.current_tab()
        if tab is None or tab not in self.layers:
            self.host.show_message(
                "No uncertainty map to export: compute one first (AI > Uncertainty map)",
                8000,
            )
            return
        stem = Path(str(tab.path)).stem
        path, _ = QFileDialog.getSaveFileName(
            self.parent(),
            "Export uncertainty map",
            f"{stem}.uncertainty.png",
            "Picture with legend (*.png);;Values, float32 map TIFF (*.tif *.tiff)",
        )
        if path:
            self.export_to(tab, path)

    def export_to(
        self, tab: SlideTab, path: str | os.PathLike[str]
    ) -> UncertaintyExport | None:
        """Write the slide's uncertainty map (the whole map: cells not computed say so) to
        ``path`` (.png picture or .tif values, with its provenance); a few ms, on this thread."""
        layer = self.layers.get(tab)
        heatmap = tab.heatmap
        if layer is None or heatmap is None or heatmap.live.model is None:
            return None
        grid = layer.live.grid
        data = HeatmapData(
            grid.encoded_map(),
            grid.geometry,
            ModelRecord.from_info(heatmap.live.model.info),
            "viewer",
        )
        try:
            result = export_uncertainty_map(path, data, slide_path=str(tab.path))
        except HistoViewerError as exc:
            self.host.report_error("Cannot export the uncertainty map", str(exc))
            return None
        self.host.show_message(
            f"Uncertainty map exported: {result.path} (+ provenance)", 8000
        )
        return result

    def cancel(self) -> None:
        for layer in self.layers.values():
            if layer.live.busy:
                layer.live.cancel()
                self.status_label.setText("Uncertainty: cancelling\u2026")

    # -- signals from the layers (GUI thread) ----------------------------------------------------
    def _on_progress(self, tab: SlideTab, done: int, total: int) -> None:
        if total:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setValue(done)
        self.status_label.setText(f"Uncertainty: {done} of {total} patches")
        legend = self.legends.get(tab)
        if legend is not None:
            legend.set_status(f"computing {done}/{total}")

    def _on_updated(self, tab: SlideTab, l0_rect) -> None:
        layer = self.layers.get(tab)
        if layer is not None and layer.visible:
            rect = layer.screen_rect(tab.view.viewport, l0_rect).intersected(
                tab.view.rect()
            )
            if not rect.isEmpty():
                tab.view.update(rect)

    def _on_finished(self, tab: SlideTab, outcome: UncertaintyOutcome) -> None:
        # this tab's job is over even while its thread is still returning (the signal is
        # queued before the thread ends): only the other tabs' jobs keep the progress shown
        self._show_running(any(lay.live.busy for t, lay in self.layers.items() if t is not tab))
        self.host.show_message(outcome.message, 10000)
        self.last_outcome = outcome
        legend, layer = self.legends.get(tab), self.layers.get(tab)
        if legend is not None and layer is not None:
            legend.set_status(f"slide {layer.live.coverage():.0%} computed")
        tab.lesions.refresh()  # the lesion table's uncertainty column
        self._update_actions()

    def _show_running(self, running: bool) -> None:
        for widget in (self.status_label, self.progress_bar, self.cancel_button):
            widget.setVisible(running)

    # -- display --------------------------------------------------------------------------------
    def _toggle_show(self, checked: bool) -> None:
        for tab, layer in self.layers.items():
            layer.visible = checked
            legend = self.legends.get(tab)
            if legend is not None:
                legend.setVisible(checked)
            tab.view.update()
        if not checked:
            self.hover_label.setText("")

    def _on_cursor_moved(self, tab: SlideTab, l0_pos) -> None:
        layer = self.layers.get(tab)
        if (
            l0_pos is None
            or tab is not self.host.current_tab()
            or layer is None
            or not layer.visible
        ):
            self.hover_label.setText("")
        else:
            self.hover_label.setText(layer.live.describe_at(*l0_pos))

    def _update_actions(self) -> None:
        tab = self.host.current_tab()
        layer = None if tab is None else self.layers.get(tab)
        running = layer is not None and layer.live.busy
        for action in (self.view_action, self.region_action, self.slide_action):
            action.setEnabled(tab is not None and not running)
        self.cancel_action.setEnabled(running)
        self.export_action.setEnabled(layer is not None)

    def close(self) -> None:
        """The window closes: stop every job."""
        for tab in list(self.layers):
            self.drop(tab)
