"""Qt side of one slide's uncertainty map: GUI-thread hops, painting of its raster, its legend.

The work is in ``core.inference.uncertainty_live.LiveUncertainty`` (a job thread); this layer
hands its callbacks to the GUI thread as signals and paints its raster over the slide, above
the probability heatmap, exactly as the heatmap is painted (one ``drawImage`` of the visible
cells, crisp squares). ``UncertaintyLegend`` says what the colours mean.
"""

from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QRegion
from PySide6.QtWidgets import QWidget

from histoviewer.core.inference.grid import PredictionGrid
from histoviewer.core.inference.overlay import PENDING_RGBA
from histoviewer.core.inference.uncertainty_live import (
    LiveUncertainty,
    UncertaintyOutcome,
)
from histoviewer.core.inference.uncertainty_map import (
    UNCERTAINTY_DISPLAY_MAX,
    UNCERTAINTY_SHOWN_FROM,
    uncertainty_style,
)
from histoviewer.core.slide.reader import SlideReader
from histoviewer.core.tiles.viewport import Viewport
from histoviewer.qt.heatmap_layer import draw_grid_image
from histoviewer.qt.heatmap_legend import begin_legend_card
from histoviewer.qt.threads import gui_thread

__all__ = ["UncertaintyLayer", "UncertaintyLegend"]


class UncertaintyLayer(QObject):
    """Runs requests for and paints the uncertainty map of one slide. Signals arrive on the
    GUI thread: ``progress(done, total)`` patches of the running request, ``updated(l0_rect)``
    colours changed there, ``finished(UncertaintyOutcome)``."""

    progress = Signal(int, int)
    updated = Signal(object)
    finished = Signal(object)

    def __init__(
        self,
        slide_path: str | os.PathLike[str],
        reader: SlideReader,
        grid: PredictionGrid,
        model_spec: str,
        device: str,
        threshold: float | None = None,
        parent: QObject | None = None,
        **live_kwargs,
    ) -> None:
        super().__init__(parent)
        self.visible = True
        self._closed = False
        self.source_grid = (
            grid  # the heatmap grid this map follows (dropped when it is replaced)
        )
        self.live = LiveUncertainty(
            slide_path,
            reader,
            grid,
            model_spec,
            device,
            threshold=threshold,
            on_progress=self._on_progress,
            on_update=self._on_update,
            on_finished=self._on_finished,
            **live_kwargs,
        )
        raster = self.live.raster
        rows, cols = raster.rgba.shape[:2]
        # Wraps the raster's memory (no copy): the job thread recolours cells in place.
        self._image = QImage(
            raster.rgba.data,
            cols,
            rows,
            cols * 4,
            QImage.Format.Format_RGBA8888_Premultiplied,
        )

    # callbacks of the job thread, run on the GUI thread; nothing is emitted after close()
    @gui_thread
    def _on_progress(self, done: int, total: int) -> None:
        if not self._closed:
            self.progress.emit(done, total)

    @gui_thread
    def _on_update(self, window: tuple[int, int, int, int]) -> None:
        if not self._closed:
            g = self.live.grid.geometry
            r0, r1, c0, c1 = window
            s = g.l0_stride
            self.updated.emit(
                (
                    g.l0_origin_x + c0 * s,
                    g.l0_origin_y + r0 * s,
                    (c1 - c0) * s,
                    (r1 - r0) * s,
                )
            )

    @gui_thread
    def _on_finished(self, outcome: UncertaintyOutcome) -> None:
        if not self._closed:
            self.finished.emit(outcome)

    def paint(self, painter: QPainter, viewport: Viewport, region: QRegion) -> None:
        """Draw the visible map cells into the dirty ``region`` of the view."""
        if not self.visible:
            return
        painter.save()
        painter.setClipRegion(region)
        draw_grid_image(painter, viewport, self.live.grid.geometry, self._image)
        painter.restore()

    def screen_rect(
        self, viewport: Viewport, l0_rect: tuple[float, float, float, float]
    ) -> QRect:
        x, y, w, h = l0_rect
        sx0, sy0 = viewport.l0_to_screen(x, y)
        sx1, sy1 = viewport.l0_to_screen(x + w, y + h)
        return (
            QRectF(QPointF(sx0, sy0), QPointF(sx1, sy1))
            .toAlignedRect()
            .adjusted(-1, -1, 1, 1)
        )

    def close(self) -> None:
        self._closed = True
        self.live.close()


LEGEND_SIZE = (280, 96)
_BAR_X, _BAR_W, _BAR_H = 12, 256, 12
_CAVEAT_LINE_H = 14


class UncertaintyLegend(QWidget):
    """Colour bar of the uncertainty map with its scale and meaning, and a status line
    (coverage or the running request). Opaque, bottom-left of the view."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(*LEGEND_SIZE)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        style = uncertainty_style()
        # the bar spans 0..UNCERTAINTY_DISPLAY_MAX: the stretched table's first part
        top = round(UNCERTAINTY_DISPLAY_MAX * 255)
        index = np.clip(np.rint(np.linspace(0, top, 256)), 0, 255).astype(np.int64)
        self._bar_pixels = np.ascontiguousarray(
            np.repeat(style.lut[index][None], _BAR_H, axis=0)
        )
        self._bar = QImage(
            self._bar_pixels.data, 256, _BAR_H, 256 * 3, QImage.Format.Format_RGB888
        )
        self.status = ""
        self.caveat = (
            ""  # the model's (``uncertainty_caveat``): drawn below, the legend grows
        )

    def set_caveat(self, text: str) -> None:
        """A sentence on what this map cannot show for this model (brown, wrapped)."""
        self.caveat = text
        self.setFixedSize(
            LEGEND_SIZE[0], LEGEND_SIZE[1] + (3 * _CAVEAT_LINE_H if text else 0)
        )
        self.update()

    def set_status(self, text: str) -> None:
        if text != self.status:
            self.status = text
            self.update()

    def paintEvent(self, event) -> None:
        p = begin_legend_card(self)
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        p.drawText(
            QRectF(_BAR_X, 4, _BAR_W, 16),
            left,
            "Uncertainty: SD of P(tumour) over 8 views",
        )
        top = 22
        p.drawImage(QRectF(_BAR_X, top, _BAR_W, _BAR_H), self._bar)
        # below UNCERTAINTY_SHOWN_FROM nothing is painted: grey that part of the bar out
        shown = _BAR_W * UNCERTAINTY_SHOWN_FROM / UNCERTAINTY_DISPLAY_MAX
        p.fillRect(QRectF(_BAR_X, top, shown, _BAR_H), QColor(255, 255, 255, 170))
        p.setPen(QColor(20, 20, 20))
        for value in (0.0, 0.1, 0.2, UNCERTAINTY_DISPLAY_MAX):
            x = _BAR_X + _BAR_W * value / UNCERTAINTY_DISPLAY_MAX
            p.drawLine(int(x), top + _BAR_H, int(x), top + _BAR_H + 3)
            if (
                value == UNCERTAINTY_DISPLAY_MAX
            ):  # the top saturates: "or more", kept inside the legend
                p.drawText(
                    QRectF(x - 40, top + _BAR_H + 3, 40, 14),
                    Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                    f"\u2265{value:g}",
                )
            else:
                p.drawText(
                    QRectF(x - 20, top + _BAR_H + 3, 40, 14),
                    Qt.AlignmentFlag.AlignCenter,
                    f"{value:g}",
                )
        y = top + _BAR_H + 19
        p.drawText(
            QRectF(_BAR_X, y, _BAR_W, 14),
            left,
            f"views: 4 rotations \u00d7 mirror; clear: SD < {UNCERTAINTY_SHOWN_FROM:g}",
        )
        r, g, b, a = PENDING_RGBA
        k = a / 255
        p.fillRect(
            QRectF(_BAR_X, y + 17, 12, 10),
            QColor(
                int(r * k + 235 * (1 - k)),
                int(g * k + 215 * (1 - k)),
                int(b * k + 225 * (1 - k)),
            ),
        )
        p.drawText(QRectF(_BAR_X + 16, y + 15, 100, 14), left, "not computed")
        if self.status:
            p.setPen(QPen(QColor(90, 90, 90)))
            p.drawText(
                QRectF(_BAR_X + 100, y + 15, _BAR_W - 100, 14),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                p.fontMetrics().elidedText(
                    self.status, Qt.TextElideMode.ElideRight, _BAR_W - 100
                ),
            )
        if self.caveat:
            p.setPen(QColor(150, 90, 0))
            p.drawText(
                QRectF(_BAR_X, LEGEND_SIZE[1] - 6, _BAR_W, 3 * _CAVEAT_LINE_H),
                int(
                    Qt.AlignmentFlag.AlignLeft
                    | Qt.AlignmentFlag.AlignTop
                    | Qt.TextFlag.TextWordWrap
                ),
                self.caveat,
            )
        p.end()
