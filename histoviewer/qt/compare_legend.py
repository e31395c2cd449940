"""The model comparison's legend on the slide view (AI > Compare with model...).

What the colours over the slide mean must be readable where the pathologist looks: the view,
not only the dialog. Shows which map is painted (A - B, or one model's P(tumour)), its colour
bar and scale (-1 "B higher" .. +1 "A higher", or 0..1), what "clear" means (agreement, or
a patch one of the models did not classify: never read as agreement alone), the two models'
names, and the outline colours by who found a lesion.

Floats bottom-left of the view, above the scale bar (the heatmap's legend and the uncertainty
map's are bottom-right); opaque like them. It places itself: it follows the view's resizes.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QObject, QRectF, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QWidget

from histoviewer.core.analysis.lesion_match import FOUND_BY_A, FOUND_BY_B, FOUND_BY_BOTH
from histoviewer.core.colormaps import DEFAULT_COLORMAP, colormap_lut
from histoviewer.core.jobs.compare import (
    DIFFERENCE_LUT,
    FULL_OPACITY_AT,
    finding_colour,
)
from histoviewer.qt.heatmap_legend import begin_legend_card

__all__ = ["CompareLegend"]

MODE_DIFFERENCE, MODE_A, MODE_B = "difference", "a", "b"  # as compare_dialog's
_WIDTH = 280
_BAR_X, _BAR_W, _BAR_H = 12, 256, 12
_LINE_H = 15
_MARGIN_PX = 10  # from the view's left edge and above the scale bar
_ALARM_RGB = (190, 0, 0)


def _bar_image(lut: np.ndarray) -> tuple[np.ndarray, QImage]:
    pixels = np.ascontiguousarray(np.repeat(lut[None, :, :], _BAR_H, axis=0))
    return pixels, QImage(
        pixels.data, 256, _BAR_H, 256 * 3, QImage.Format.Format_RGB888
    )


class CompareLegend(QWidget):
    """``parent``: the slide view. ``set_state`` chooses what it says; ``lines()`` is its text."""

    def __init__(
        self, view: QWidget, name_a: str, name_b: str, *, b_drawn: bool = True
    ) -> None:
        super().__init__(view)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.name_a, self.name_b, self.b_drawn = name_a, name_b, b_drawn
        self.mode, self.outlines = MODE_DIFFERENCE, True
        # kept: QImage does not own these pixels
        self._diff_pixels, self._diff_bar = _bar_image(DIFFERENCE_LUT)
        self._p_pixels, self._p_bar = _bar_image(colormap_lut(DEFAULT_COLORMAP))
        view.installEventFilter(self)
        self._resize()

    # -- what it says ---------------------------------------------------------------------------
    def set_state(self, mode: str, outlines: bool) -> None:
        self.mode, self.outlines = mode, outlines
        self._resize()
        self.update()

    def title(self) -> str:
        if self.mode == MODE_DIFFERENCE:
            return "Model comparison: A \u2212 B, P(tumour)"
        return (
            f"Model comparison: {'A' if self.mode == MODE_A else 'B'} alone, P(tumour)"
        )

    def scale_labels(self) -> tuple[str, str, str]:
        if self.mode == MODE_DIFFERENCE:
            return "\u22121  B higher", "0", "A higher  +1"
        return "0", "0.5", "1"

    def clear_lines(self) -> list[str]:
        """What a see-through patch means (never agreement alone: a patch only one model
        classified is clear too)."""
        if self.mode == MODE_DIFFERENCE:
            return [
                "clear: agree, or not classified by both",
                f"full colour from {FULL_OPACITY_AT:g} apart",
            ]
        return ["clear: background, failed or not classified"]

    def warning(self) -> str:
        if self.mode == MODE_B and not self.b_drawn:
            return "B's map is on another grid: not drawn here"
        return ""

    def model_lines(self) -> tuple[str, str]:
        shown = {MODE_A: "A", MODE_B: "B"}.get(self.mode)
        return (
            f"A{' (shown)' if shown == 'A' else ''}: {self.name_a}",
            f"B{' (shown)' if shown == 'B' else ''}: {self.name_b}",
        )

    def lines(self) -> list[str]:
        """Everything the legend writes, top to bottom (tests, accessibility)."""
        out = [
            self.title(),
            " ".join(self.scale_labels()),
            *self.clear_lines(),
            *self.model_lines(),
        ]
        if self.outlines:
            out.append("outlines: both, A only, B only")
        if self.warning():
            out.append(self.warning())
        return out

    # -- geometry -------------------------------------------------------------------------------
    def _resize(self) -> None:
        # the text lines below the scale: what clear means, A, B, outlines, warning
        rows = len(self.clear_lines()) + 2 + self.outlines + bool(self.warning())
        self.setFixedSize(_WIDTH, 22 + _BAR_H + 3 + _LINE_H + rows * _LINE_H + 6)
        self.place()

    def place(self) -> None:
        view = self.parentWidget()
        bottom = view.height() - _MARGIN_PX
        # SlideView's (a plain parent widget has none)
        scale_bar = getattr(view, "_scale_bar_rect", None)
        if scale_bar is not None and not (bar := scale_bar()).isNull():
            bottom = bar.top() - _MARGIN_PX
        self.move(_MARGIN_PX, max(0, bottom - self.height()))

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.parentWidget() and event.type() == QEvent.Type.Resize:
            self.place()
        return False

    # -- painting -------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:
        p = begin_legend_card(self)
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        metrics = p.fontMetrics()

        def text(y: float, line: str, x: float = _BAR_X, width: float = _BAR_W) -> None:
            p.drawText(
                QRectF(x, y, width, 14),
                left,
                metrics.elidedText(line, Qt.TextElideMode.ElideRight, int(width)),
            )

        text(4, self.title())
        top = 22
        p.drawImage(
            QRectF(_BAR_X, top, _BAR_W, _BAR_H),
            self._diff_bar if self.mode == MODE_DIFFERENCE else self._p_bar,
        )
        low, mid, high = self.scale_labels()
        for value, label, align in (
            (0.0, low, Qt.AlignmentFlag.AlignLeft),
            (0.5, mid, Qt.AlignmentFlag.AlignHCenter),
            (1.0, high, Qt.AlignmentFlag.AlignRight),
        ):
            x = _BAR_X + _BAR_W * value
            p.drawLine(int(x), top + _BAR_H, int(x), top + _BAR_H + 3)
            box = {
                Qt.AlignmentFlag.AlignLeft: QRectF(_BAR_X, top + _BAR_H + 3, 110, 14),
                Qt.AlignmentFlag.AlignHCenter: QRectF(x - 20, top + _BAR_H + 3, 40, 14),
                Qt.AlignmentFlag.AlignRight: QRectF(x - 110, top + _BAR_H + 3, 110, 14),
            }[align]
            p.drawText(box, align | Qt.AlignmentFlag.AlignVCenter, label)
        y = top + _BAR_H + 3 + _LINE_H
        text(y, self.clear_lines()[0])
        for line in [*self.clear_lines()[1:], *self.model_lines()]:
            y += _LINE_H
            text(y, line)
        if self.outlines:
            y += _LINE_H
            text(y, "outlines:", width=60)
            x = _BAR_X + 56
            for who, label in (
                (FOUND_BY_BOTH, "both"),
                (FOUND_BY_A, "A only"),
                (FOUND_BY_B, "B only"),
            ):
                p.setPen(QColor(*finding_colour(who)))
                p.drawRect(QRectF(x, y + 3, 10, 8))
                p.drawRect(QRectF(x + 1, y + 4, 8, 6))  # 2 px, like the outlines' pen
                p.setPen(QColor(20, 20, 20))
                text(y, label, x + 14, 50)
                x += 66
        if self.warning():
            y += _LINE_H
            p.setPen(QColor(*_ALARM_RGB))
            text(y, self.warning())
        p.end()
