"""The overview: the slide thumbnail with the viewport rectangle; click or drag to move."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QWidget

from histoviewer.core.tiles.viewport import Viewport

MINIMAP_MAX_SIDE = 220


class Minimap(QWidget):
    centerRequested = Signal(float, float)  # level-0 x, y

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._l0_size = (1, 1)
        self._viewport: Viewport | None = None
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def set_slide(self, thumbnail: QImage, l0_width: int, l0_height: int) -> None:
        self._l0_size = (l0_width, l0_height)
        k = MINIMAP_MAX_SIDE / max(l0_width, l0_height)
        w, h = max(int(l0_width * k), 24), max(int(l0_height * k), 24)
        self.setFixedSize(w + 4, h + 4)
        # Scaled once here: the overview repaints on every pan frame and must only blit.
        self._image = thumbnail.scaled(
            w, h, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        self.update()

    def set_viewport(self, viewport: Viewport) -> None:
        self._viewport = viewport
        self.update()

    def _image_rect(self) -> QRectF:
        return QRectF(2, 2, self.width() - 4, self.height() - 4)

    def viewport_rect(self) -> QRectF | None:
        """The viewport rectangle in widget pixels (for painting and tests)."""
        if self._viewport is None:
            return None
        r = self._image_rect()
        kx, ky = r.width() / self._l0_size[0], r.height() / self._l0_size[1]
        x0, y0, x1, y1 = self._viewport.l0_rect
        return QRectF(r.x() + x0 * kx, r.y() + y0 * ky, (x1 - x0) * kx, (y1 - y0) * ky)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), QColor(255, 255, 255, 230))
            if self._image is not None:
                painter.drawImage(self._image_rect().topLeft(), self._image)
            rect = self.viewport_rect()
            if rect is not None:
                # Shade what is outside the view, so the rectangle reads at every zoom.
                image_rect = self._image_rect()
                painter.setClipRect(image_rect)
                outside = QPainterPath()
                outside.addRect(image_rect)
                inside = QPainterPath()
                inside.addRect(rect)
                painter.fillPath(outside.subtracted(inside), QColor(40, 40, 40, 90))
                painter.setPen(QPen(QColor(0, 90, 200), 2))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(rect if rect.width() > 6 else rect.adjusted(-3, -3, 3, 3))
            painter.setClipping(False)
            painter.setPen(QPen(QColor(120, 120, 120), 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        finally:
            painter.end()

    def _request(self, pos: QPointF) -> None:
        r = self._image_rect()
        l0_x = (pos.x() - r.x()) / r.width() * self._l0_size[0]
        l0_y = (pos.y() - r.y()) / r.height() * self._l0_size[1]
        self.centerRequested.emit(l0_x, l0_y)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.MouseButton.LeftButton:
            self._request(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt override
        if event.buttons() & Qt.MouseButton.LeftButton:
            self._request(event.position())
