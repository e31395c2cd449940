"""The overview: the slide thumbnail with the viewport rectangle; click or drag to move.

The widget floats over the slide view and is opaque (``WA_OpaquePaintEvent``, filled
solid): Qt then never repaints the view's tiles beneath it, which a translucent overlay
forced on every pan frame.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QWidget

from histoviewer.core.tiles.session import PLACEHOLDER_GREY
from histoviewer.core.tiles.viewport import Viewport

MINIMAP_MAX_SIDE = 220
_FRAME = QColor(255, 255, 255)
_PLACEHOLDER = QColor(PLACEHOLDER_GREY, PLACEHOLDER_GREY, PLACEHOLDER_GREY)
_SHADE = QColor(40, 40, 40, 90)
_OUTLINE = QColor(0, 90, 200)
_BORDER = QColor(120, 120, 120)


class Minimap(QWidget):
    centerRequested = Signal(float, float)  # level-0 x, y

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._l0_size = (1, 1)
        self._viewport: Viewport | None = None
        self._drawn_rect: QRect | None = None  # the viewport rectangle as last painted
        self._base: QImage | None = None  # frame, picture and border: one blit per paint
        # Drawn over the thumbnail in the composed picture: an object with
        # paint_overview(painter, image_rect, l0_size) (the heatmap layer).
        self.overlay = None
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def set_slide(self, thumbnail: QImage | None, l0_width: int, l0_height: int) -> None:
        """Size the overview for the slide; ``thumbnail`` may follow later (``set_thumbnail``)."""
        self._l0_size = (l0_width, l0_height)
        k = MINIMAP_MAX_SIDE / max(l0_width, l0_height)
        w, h = max(int(l0_width * k), 24), max(int(l0_height * k), 24)
        self.setFixedSize(w + 4, h + 4)
        self.set_thumbnail(thumbnail)

    def set_thumbnail(self, thumbnail: QImage | None) -> None:
        # Scaled once here: the overview repaints on pan frames and must only blit.
        self._image = None if thumbnail is None else thumbnail.scaled(
            self.width() - 4, self.height() - 4,
            Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation,
        )
        self._base = None
        self.update()

    def invalidate_overlay(self) -> None:
        """The overlay changed: compose the picture again at the next paint."""
        self._base = None
        self.update()

    def set_viewport(self, viewport: Viewport) -> None:
        self._viewport = viewport
        rect = self._painted_rect()
        if rect != self._drawn_rect:  # most pan frames move it by less than a pixel
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

    def _painted_rect(self) -> QRect | None:
        """The viewport rectangle in whole widget pixels, as painted."""
        rect = self.viewport_rect()
        return None if rect is None else rect.toRect()

    def _base_image(self) -> QImage:
        """Everything but the viewport rectangle, composed once per picture and size.

        The overview repaints on every scrolled pan frame (scrolling moves its pixels
        too), so a paint is one blit plus a few rectangles.
        """
        if self._base is None or self._base.size() != self.size():
            base = QImage(self.size(), QImage.Format.Format_RGB32)
            painter = QPainter(base)
            try:
                painter.fillRect(base.rect(), _FRAME)
                image_rect = self._image_rect().toRect()
                if self._image is not None:
                    painter.drawImage(image_rect.topLeft(), self._image)
                else:
                    painter.fillRect(image_rect, _PLACEHOLDER)
                if self.overlay is not None:
                    self.overlay.paint_overview(painter, QRectF(image_rect), self._l0_size)
                painter.setPen(QPen(_BORDER, 1))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(base.rect().adjusted(0, 0, -1, -1))
            finally:
                painter.end()
            self._base = base
        return self._base

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        painter = QPainter(self)
        try:
            painter.drawImage(0, 0, self._base_image())
            rect = self._painted_rect()
            self._drawn_rect = rect
            if rect is None:
                return
            # Shade what is outside the view, so the rectangle reads at every zoom: four
            # bands around it, then a 2 px outline; plain rectangles, no path or wide pen.
            image_rect = self._image_rect().toRect()
            inner = rect.intersected(image_rect)
            if inner.isEmpty():
                painter.fillRect(image_rect, _SHADE)
            else:
                left, top, right, bottom = image_rect.left(), image_rect.top(), image_rect.right(), image_rect.bottom()
                painter.fillRect(QRect(left, top, image_rect.width(), inner.top() - top), _SHADE)
                painter.fillRect(QRect(left, inner.bottom() + 1, image_rect.width(), bottom - inner.bottom()), _SHADE)
                painter.fillRect(QRect(left, inner.top(), inner.left() - left, inner.height()), _SHADE)
                painter.fillRect(QRect(inner.right() + 1, inner.top(), right - inner.right(), inner.height()), _SHADE)
            outline = rect.adjusted(-1, -1, 1, 1) if rect.width() > 6 else rect.adjusted(-4, -4, 4, 4)
            painter.setClipRect(image_rect)
            x, y, w, h = outline.x(), outline.y(), outline.width(), outline.height()
            for band in (QRect(x, y, w, 2), QRect(x, y + h - 2, w, 2), QRect(x, y, 2, h), QRect(x + w - 2, y, 2, h)):
                painter.fillRect(band, _OUTLINE)
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
