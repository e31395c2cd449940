"""Qt side of one slide's live AI overlay: GUI-thread hops and painting of the raster.

All the work is in ``core.inference.live.LiveHeatmap``; this class hands its callbacks
(start-up and worker threads) to the GUI thread (``qt/threads.py``) as signals, and paints
its ``HeatmapRaster`` over the slide view: one ``drawImage`` of the visible cells, scaled
without smoothing so each patch stays a crisp square aligned with the tissue it describes.
"""

from __future__ import annotations

import math
import os

from PySide6.QtCore import QObject, QPointF, QRect, QRectF, Signal
from PySide6.QtGui import QImage, QPainter, QRegion

from histoviewer.core.inference.cached_regions import CachedTileRegionSource
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import CellState
from histoviewer.core.inference.live import LiveHeatmap, LiveOptions
from histoviewer.core.inference.overlay import HeatmapStyle
from histoviewer.core.tiles.session import SlideSession
from histoviewer.core.tiles.viewport import Viewport
from histoviewer.qt.images import qimage_rgb_view
from histoviewer.qt.threads import gui_thread


def draw_grid_image(painter: QPainter, viewport: Viewport, geometry: GridGeometry, image: QImage) -> None:
    """Draw the cells of ``image`` (one pixel a cell of ``geometry``'s grid) that ``viewport``
    shows, each over its level-0 square; the painter's clip and state are the caller's. Every
    map overlay paints this way (the heatmap, the uncertainty map, a model comparison)."""
    g, s = geometry, geometry.l0_stride
    l0_x, l0_y, l0_w, l0_h = viewport.l0_xywh
    c0 = max(0, math.floor((l0_x - g.l0_origin_x) / s))
    r0 = max(0, math.floor((l0_y - g.l0_origin_y) / s))
    c1 = min(g.cols, math.ceil((l0_x + l0_w - g.l0_origin_x) / s))
    r1 = min(g.rows, math.ceil((l0_y + l0_h - g.l0_origin_y) / s))
    if c1 <= c0 or r1 <= r0:
        return
    sx0, sy0 = viewport.l0_to_screen(g.l0_origin_x + c0 * s, g.l0_origin_y + r0 * s)
    sx1, sy1 = viewport.l0_to_screen(g.l0_origin_x + c1 * s, g.l0_origin_y + r1 * s)
    # Cells several screen px wide stay crisp squares; when a cell is smaller than a
    # pixel (far zoomed out) smoothing averages them instead of dropping most.
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, (sx1 - sx0) / (c1 - c0) < 2.0)
    painter.drawImage(QRectF(QPointF(sx0, sy0), QPointF(sx1, sy1)), image, QRectF(c0, r0, c1 - c0, r1 - r0))


class HeatmapLayer(QObject):
    """Runs and paints the overlay of one slide. Signals arrive on the GUI thread."""

    ready = Signal()
    updated = Signal(object)  # level-0 (x, y, w, h) whose colours changed
    failed = Signal(str)  # some patches failed; the work goes on
    idle = Signal()
    error = Signal(str)  # the overlay cannot run at all

    def __init__(self, slide_path: str | os.PathLike[str], session: SlideSession, options: LiveOptions,
                 style: HeatmapStyle, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.visible = True
        self._image: QImage | None = None
        self._closed = False

        def from_tile_cache(fallback):
            # the tiles the view shows are decoded already: the model reads those first
            return CachedTileRegionSource(session.cache, session.tiling, session.slide_id, qimage_rgb_view,
                                          fallback)

        self.live = LiveHeatmap(
            slide_path, session.reader, options, style, region_source=from_tile_cache,
            on_ready=lambda _live: self._on_ready(), on_update=self._on_window, on_failure=self._on_failure,
            on_idle=self._on_idle, on_error=self._on_error,
        )

    # The overlay's callbacks: called on its start-up and worker threads, run on the GUI thread
    # (``gui_thread``); nothing is emitted once ``close()`` ran, even for results in flight.
    @gui_thread
    def _on_ready(self) -> None:
        raster = self.live.raster
        if self._closed or raster is None:
            return
        rows, cols = raster.rgba.shape[:2]
        # Wraps the raster's memory (no copy): the worker recolours cells in place.
        self._image = QImage(raster.rgba.data, cols, rows, cols * 4, QImage.Format.Format_RGBA8888_Premultiplied)
        self.ready.emit()
        self.updated.emit(self.l0_extent())

    @gui_thread
    def _on_window(self, window: tuple[int, int, int, int]) -> None:
        if not self._closed:
            self.updated.emit(self.window_l0_rect(window))

    @gui_thread
    def _on_failure(self, message: str) -> None:
        if not self._closed:
            self.failed.emit(message)

    @gui_thread
    def _on_idle(self) -> None:
        if not self._closed:
            self.idle.emit()

    @gui_thread
    def _on_error(self, message: str) -> None:
        if not self._closed:
            self.error.emit(message)

    # -- geometry -----------------------------------------------------------------------------
    def l0_extent(self) -> tuple[float, float, float, float]:
        info = self.live.reader.info
        return 0.0, 0.0, float(info.dimensions[0]), float(info.dimensions[1])

    def window_l0_rect(self, window: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
        """Level-0 (x, y, w, h) of map cells (row0, row1, col0, col1)."""
        g = self.live.grid.geometry
        r0, r1, c0, c1 = window
        s = g.l0_stride
        return g.l0_origin_x + c0 * s, g.l0_origin_y + r0 * s, (c1 - c0) * s, (r1 - r0) * s

    # -- painting -----------------------------------------------------------------------------
    @property
    def paintable(self) -> bool:
        return self.visible and self._image is not None

    def paint(self, painter: QPainter, viewport: Viewport, region: QRegion) -> None:
        """Draw the visible map cells into the dirty ``region`` of the view."""
        if not self.paintable:
            return
        painter.save()
        painter.setClipRegion(region)
        draw_grid_image(painter, viewport, self.live.grid.geometry, self._image)
        painter.restore()

    def paint_overview(self, painter: QPainter, image_rect: QRectF, l0_size: tuple[int, int]) -> None:
        """Draw the whole map, smoothed, into ``image_rect``, which shows the slide's
        level-0 extent ``l0_size`` (the overview)."""
        if not self.paintable:
            return
        g = self.live.grid.geometry
        kx, ky = image_rect.width() / l0_size[0], image_rect.height() / l0_size[1]
        target = QRectF(image_rect.x() + g.l0_origin_x * kx, image_rect.y() + g.l0_origin_y * ky,
                        g.cols * g.l0_stride * kx, g.rows * g.l0_stride * ky)
        painter.save()
        painter.setClipRect(image_rect)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(target, self._image)
        painter.restore()

    def screen_rect(self, viewport: Viewport, l0_rect: tuple[float, float, float, float]) -> QRect:
        x, y, w, h = l0_rect
        sx0, sy0 = viewport.l0_to_screen(x, y)
        sx1, sy1 = viewport.l0_to_screen(x + w, y + h)
        return QRectF(QPointF(sx0, sy0), QPointF(sx1, sy1)).toAlignedRect().adjusted(-1, -1, 1, 1)

    # -- queries ------------------------------------------------------------------------------
    def describe_at(self, l0_x: float, l0_y: float) -> str:
        """What the status bar says about the patch under the cursor."""
        raster = self.live.raster
        if raster is None:
            return ""
        found = raster.probability_at(l0_x, l0_y)
        if found is None:
            return ""
        state, value = found
        return {
            CellState.COMPUTED: f"P(tumour) {value:.2f}",
            CellState.NOT_COMPUTED: "P(tumour) not yet classified",
            CellState.BACKGROUND: "no tissue (not classified)",
            CellState.FAILED: "P(tumour) failed",
            CellState.SCREENED_NEGATIVE: "screened negative at 2.5x: not classified by the full model",
        }[state]

    def close(self) -> None:
        self._closed = True
        self.live.close()
