"""The heatmap's legend: colour bar with the probability scale, threshold, model name and
the model's caution (what it was trained on, "not validated for clinical use"), in full.

Floats in the view's bottom-right corner. Opaque (like the overview) so panning never
repaints the tiles beneath it. The caution wraps rather than being cut off: the part that
would be cut is the part that matters ("not validated for clinical use"); the legend grows
to hold it (``heightChanged``: the tab re-anchors it to the corner).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget

from histoviewer.core.inference.overlay import (
    FAILED_RGBA,
    PENDING_RGBA,
    SCREENED_RGBA,
    HeatmapStyle,
)

LEGEND_SIZE = (280, 104)  # with a one-line status; each further line of it adds _LINE_H
_BAR_X, _BAR_W, _BAR_H = 12, 256, 12
_LINE_H = 14
_UNAVAILABLE_TOP = 22  # where the reason starts when the AI cannot run
_FONT_PT = 8.5


def legend_font(widget: QWidget) -> QFont:
    """The legends' small font (``widget``'s family at ``_FONT_PT``)."""
    font = QFont(widget.font())
    font.setPointSizeF(_FONT_PT)
    return font


def begin_legend_card(widget: QWidget) -> QPainter:
    """A painter on ``widget`` with the legends' card drawn (white, grey edge) and their font
    and text colour set: every map legend (probability, uncertainty, comparison) looks alike."""
    p = QPainter(widget)
    p.fillRect(widget.rect(), QColor(255, 255, 255))
    p.setPen(QColor(150, 150, 150))
    p.drawRect(widget.rect().adjusted(0, 0, -1, -1))
    p.setFont(legend_font(widget))
    p.setPen(QColor(20, 20, 20))
    return p
_STATUS_RGB = (150, 90, 0)  # a caution: brown
_ALARM_RGB = (190, 0, 0)  # the result cannot be trusted here: red


class HeatmapLegend(QWidget):
    heightChanged = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFixedSize(*LEGEND_SIZE)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self._style: HeatmapStyle | None = None
        self._bar: QImage | None = None
        self._bar_pixels: np.ndarray | None = None
        self.model_name = ""
        self.status = ""
        self.alarm = False  # the status says the result is unreliable (red), not a caution
        # False while the AI cannot run on this slide (no scale, no model): no colour bar, no
        # threshold or opacity, which would read as settings of a map that is not there
        self.available = True

    def set_style(self, style: HeatmapStyle) -> None:
        self._style = style
        # The bar shows every colour (the threshold is marked, not cut), on white.
        rgb = np.ascontiguousarray(np.repeat(style.lut[None, :, :], _BAR_H, axis=0))
        self._bar_pixels = rgb
        self._bar = QImage(rgb.data, 256, _BAR_H, 256 * 3, QImage.Format.Format_RGB888)
        self.update()

    def _font(self) -> QFont:
        return legend_font(self)

    def _status_rect(self, status: str) -> QRectF:
        """The wrapped status text's box (width ``_BAR_W``), at least one line high."""
        box = QFontMetrics(self._font()).boundingRect(
            0, 0, _BAR_W, 10_000, int(Qt.AlignmentFlag.AlignLeft | Qt.TextFlag.TextWordWrap), status)
        return QRectF(0, 0, _BAR_W, max(_LINE_H, box.height()))

    def set_text(self, model_name: str, status: str = "", alarm: bool = False, *, available: bool = True) -> None:
        """``available`` False: the AI cannot run here; only ``model_name`` and ``status`` are shown."""
        if (model_name, status, alarm, available) == (self.model_name, self.status, self.alarm, self.available):
            return
        self.model_name, self.status, self.alarm, self.available = model_name, status, alarm, available
        extra = int(self._status_rect(status).height()) - _LINE_H if status else 0
        height = LEGEND_SIZE[1] + max(0, extra)
        if not available:  # the name line and the reason only
            height = _UNAVAILABLE_TOP + int(self._status_rect(status).height()) + 8
        if height != self.height():
            self.setFixedSize(LEGEND_SIZE[0], height)
            self.heightChanged.emit()
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
        p = begin_legend_card(self)
        if not self.available:  # the name line ("AI overlay unavailable") and why, nothing else
            p.drawText(QRectF(_BAR_X, 4, _BAR_W, 16), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       p.fontMetrics().elidedText(self.model_name, Qt.TextElideMode.ElideRight, _BAR_W))
            self._draw_status(p, _UNAVAILABLE_TOP - 30)
            p.end()
            return
        p.drawText(QRectF(_BAR_X, 4, _BAR_W, 16), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   "P(tumour)")
        if self._style is None or self._bar is None:
            p.end()
            return
        top = 22
        p.drawImage(QRectF(_BAR_X, top, _BAR_W, _BAR_H), self._bar)
        # Below the threshold nothing is painted on the slide: grey that part of the bar out.
        t = self._style.threshold
        if t > 0:
            p.fillRect(QRectF(_BAR_X, top, _BAR_W * t, _BAR_H), QColor(255, 255, 255, 170))
            p.setPen(QPen(QColor(200, 0, 0), 2))
            x = _BAR_X + _BAR_W * t
            p.drawLine(int(x), top - 3, int(x), top + _BAR_H + 3)
        p.setPen(QColor(20, 20, 20))
        for value in (0.0, 0.5, 1.0):
            x = _BAR_X + _BAR_W * value
            p.drawLine(int(x), top + _BAR_H, int(x), top + _BAR_H + 3)
            p.drawText(QRectF(x - 20, top + _BAR_H + 3, 40, 14), Qt.AlignmentFlag.AlignCenter, f"{value:g}")
        p.drawText(QRectF(_BAR_X + 60, 4, _BAR_W - 60, 16), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                   f"threshold {t:.2f}, opacity {self._style.opacity:.0%}")
        y = top + _BAR_H + 20
        # the swatches spread over the bar's width by their labels' measured widths (fixed
        # offsets pushed "failed" against the edge with some fonts)
        keys = ((PENDING_RGBA, "not yet classified"), (SCREENED_RGBA, "screened neg."), (FAILED_RGBA, "failed"))
        widths = [p.fontMetrics().horizontalAdvance(label) for _, label in keys]
        gap = max(4.0, (_BAR_W - sum(16 + w for w in widths)) / (len(keys) - 1))
        x = float(_BAR_X)
        for (rgba, label), w in zip(keys, widths):
            r, g, b, a = rgba
            # the veil as it looks over pale tissue
            k = a / 255
            p.fillRect(QRectF(x, y + 2, 12, 10), QColor(int(r * k + 235 * (1 - k)), int(g * k + 215 * (1 - k)),
                                                       int(b * k + 225 * (1 - k))))
            p.drawText(QRectF(x + 16, y, w + 2, 14), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)
            x += 16 + w + gap
        p.drawText(QRectF(_BAR_X, y + 16, _BAR_W, 14), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   p.fontMetrics().elidedText(self.model_name, Qt.TextElideMode.ElideRight, _BAR_W))
        self._draw_status(p, y)
        p.end()

    def _draw_status(self, p: QPainter, y: float) -> None:
        if self.status:
            p.setPen(QColor(*(_ALARM_RGB if self.alarm else _STATUS_RGB)))
            box = self._status_rect(self.status).translated(_BAR_X, y + 30)
            p.drawText(box, int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap),
                       self.status)
