"""Lesions drawn over the slide: outline in its size-class colour, largest diameter as a line
with its length and class, the selected lesion emphasised.

A ``SlideView`` layer (``paint(painter, viewport, region)``). Outlines are kept in level-0
pixels and drawn through one transform with cosmetic pens (widths in screen px), so a pan
frame only maps the lesions whose screen box meets the dirty region. Every stroke has a
dark halo under the coloured line: it must read over pale tissue and over the heatmap's
brightest colours alike. A lesion smaller than a few screen pixels is drawn as a ring of
fixed size instead (an ITC must stay findable when the whole slide is in view), and its
label is left out.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QLineF, QObject, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen, QPolygonF, QRegion, QTransform

from histoviewer.core.analysis.lesions import Lesion
from histoviewer.core.staging_terms import SIZE_CLASS_NAMES, SIZE_CLASS_RGB
from histoviewer.core.tiles.viewport import Viewport

# The core's lesion palette (exports and reports use it too); here each on a dark halo.
CLASS_COLOURS = {cls: QColor(*rgb) for cls, rgb in SIZE_CLASS_RGB.items()}
CLASS_NAMES = SIZE_CLASS_NAMES
HALO = QColor(0, 0, 0, 170)
LINE_PX = 2.0
SELECTED_LINE_PX = 3.5
HALO_EXTRA_PX = 2.5
MARKER_RADIUS_PX = 7.0  # ring drawn around lesions smaller than this on screen
MIN_LABEL_PX = 40.0  # lesions whose diameter is shorter than this on screen get no label
LABEL_MARGIN_PX = 140  # how far a label can reach out of its lesion's box (for clipping)


def lesion_label(lesion: Lesion, classed: bool = True) -> str:
    """"1.23 mm, micro" (or the class alone without a scale). ``classed`` False (tissue unlike
    the model's training data): the size alone, "1.23 mm, unreliable", never a class."""
    if not classed:
        return "unreliable" if lesion.diameter_mm is None else f"{lesion.diameter_mm:.2f} mm, unreliable"
    name = CLASS_NAMES[lesion.size_class]
    return name if lesion.diameter_mm is None else f"{lesion.diameter_mm:.2f} mm, {name}"


class LesionLayer:
    """Paints ``lesions`` (core ``Lesion`` values); ``selected`` is a lesion index or None."""

    def __init__(self) -> None:
        self.visible = True
        # False on tissue unlike the model's training data: labels give no size class
        self.classed = True
        self.lesions: tuple[Lesion, ...] = ()
        self.selected: int | None = None
        self._polygons: dict[int, QPolygonF] = {}
        self._font: QFont | None = None
        # lesion index -> the pathologist's decision ("tumour", "not tumour", "unsure"; the review
        # queue sets it): shown in the label; a rejected lesion's outline is dashed
        self.review_marks: dict[int, str] = {}

    def set_lesions(self, lesions: tuple[Lesion, ...], classed: bool = True) -> None:
        self.lesions = tuple(lesions)
        self.classed = classed
        self._polygons = {les.index: QPolygonF([QPointF(x, y) for x, y in les.l0_outline]) for les in self.lesions}
        if self.selected is not None and self.selected not in self._polygons:
            self.selected = None

    def lesion(self, index: int | None) -> Lesion | None:
        return next((les for les in self.lesions if les.index == index), None)

    # -- geometry -----------------------------------------------------------------------------
    @staticmethod
    def _screen_box(viewport: Viewport, lesion: Lesion) -> QRectF:
        x, y, w, h = lesion.l0_bbox
        sx0, sy0 = viewport.l0_to_screen(x, y)
        sx1, sy1 = viewport.l0_to_screen(x + w, y + h)
        return QRectF(QPointF(sx0, sy0), QPointF(sx1, sy1))

    def screen_rect(self, viewport: Viewport, lesion: Lesion) -> QRect:
        """Everything drawing ``lesion`` can touch on screen (to repaint it)."""
        box = self._screen_box(viewport, lesion)
        pad = max(MARKER_RADIUS_PX, SELECTED_LINE_PX + HALO_EXTRA_PX) + 2
        rect = box.adjusted(-pad, -pad, pad, pad)
        if box.width() >= MIN_LABEL_PX or box.height() >= MIN_LABEL_PX:
            rect = rect.adjusted(-LABEL_MARGIN_PX, -LABEL_MARGIN_PX, LABEL_MARGIN_PX, LABEL_MARGIN_PX)
        return rect.toAlignedRect()

    def lesion_at(self, viewport: Viewport, sx: float, sy: float) -> Lesion | None:
        """The smallest lesion whose outline (or marker ring) holds screen point (sx, sy)."""
        l0 = QPointF(*viewport.screen_to_l0(sx, sy))
        hits = []
        for les in self.lesions:
            box = self._screen_box(viewport, les)
            centre = box.center()
            if max(box.width(), box.height()) < 2 * MARKER_RADIUS_PX:
                if QLineF(centre, QPointF(sx, sy)).length() <= MARKER_RADIUS_PX + 2:
                    hits.append(les)
            elif self._polygons[les.index].containsPoint(l0, Qt.FillRule.OddEvenFill):
                hits.append(les)
        return min(hits, key=lambda les: les.l0_diameter, default=None)

    # -- painting -----------------------------------------------------------------------------
    def paint(self, painter: QPainter, viewport: Viewport, region: QRegion) -> None:
        if not self.visible or not self.lesions:
            return
        # only lesions whose drawing can meet the dirty region: a pan strip touches few
        dirty = region.boundingRect()
        visible = []
        for les in self.lesions:
            rect = self.screen_rect(viewport, les)
            if rect.intersects(dirty) and region.intersects(rect):
                visible.append(les)
        if not visible:
            return
        x0, y0, _, _ = viewport.l0_rect
        s = viewport.scale
        to_screen = QTransform(s, 0, 0, s, -x0 * s, -y0 * s)
        painter.save()
        painter.setClipRegion(region)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        # the selected lesion last, so it is drawn over its neighbours
        visible.sort(key=lambda les: les.index == self.selected)
        for les in visible:
            self._paint_lesion(painter, viewport, to_screen, les)
        painter.restore()

    def _paint_lesion(self, painter: QPainter, viewport: Viewport, to_screen: QTransform, les: Lesion) -> None:
        colour = CLASS_COLOURS[les.size_class]
        selected = les.index == self.selected
        width = SELECTED_LINE_PX if selected else LINE_PX
        box = self._screen_box(viewport, les)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if max(box.width(), box.height()) < 2 * MARKER_RADIUS_PX:
            centre = box.center()
            radius = MARKER_RADIUS_PX + (3 if selected else 0)
            for pen in (_pen(HALO, width + HALO_EXTRA_PX), _pen(colour, width)):
                painter.setPen(pen)
                painter.drawEllipse(centre, radius, radius)
            return
        outline = to_screen.map(self._polygons[les.index])
        mark = self.review_marks.get(les.index)
        style = Qt.PenStyle.DashLine if mark == "not tumour" else Qt.PenStyle.SolidLine
        for pen in (_pen(HALO, width + HALO_EXTRA_PX), _pen(colour, width, style)):
            painter.setPen(pen)
            painter.drawPolygon(outline)
        if selected:
            # a translucent fill makes the selected lesion stand out over a busy heatmap
            fill = QColor(colour)
            fill.setAlpha(45)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(fill)
            painter.drawPolygon(outline)
            painter.setBrush(Qt.BrushStyle.NoBrush)
        (ax, ay), (bx, by) = les.l0_diameter_ends
        a = QPointF(*viewport.l0_to_screen(ax, ay))
        b = QPointF(*viewport.l0_to_screen(bx, by))
        line = QLineF(a, b)
        for pen in (_pen(HALO, 1.5 + HALO_EXTRA_PX), _pen(QColor(255, 255, 255), 1.5, Qt.PenStyle.DashLine)):
            painter.setPen(pen)
            painter.drawLine(line)
        if line.length() >= MIN_LABEL_PX or selected:
            text = lesion_label(les, self.classed) + (f" \u2013 reviewed: {mark}" if mark else "")
            self._paint_label(painter, line, text, colour)

    def _paint_label(self, painter: QPainter, line: QLineF, text: str, colour: QColor) -> None:
        if self._font is None:
            self._font = QFont()
            self._font.setPointSizeF(9.5)
            self._font.setBold(True)
        metrics = QFontMetricsF(self._font)
        w, h = metrics.horizontalAdvance(text) + 10, metrics.height() + 4
        mid = line.center()
        # above and right of the line's midpoint: it names the line without hiding its middle
        box = QRectF(mid.x() + 6, mid.y() - h - 6, w, h)
        path = QPainterPath()
        path.addRoundedRect(box, 4, 4)
        painter.setPen(QPen(colour, 1.5))
        painter.setBrush(QColor(20, 20, 20, 215))
        painter.drawPath(path)
        painter.setFont(self._font)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.setBrush(Qt.BrushStyle.NoBrush)


CLICK_SLOP_PX = 4  # a press and release this close together are a click, not a drag


class LesionClickFilter(QObject):
    """Watches a slide view's mouse: a left click (not a drag) on a lesion says ``picked(index)``.
    Never consumes the event, so panning and any other tool on the view work as before."""

    picked = Signal(int)

    def __init__(self, view, layer: LesionLayer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view, self.layer = view, layer
        self._press: QPointF | None = None
        view.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            self._press = event.position()
        elif kind == QEvent.Type.MouseButtonRelease and event.button() == Qt.MouseButton.LeftButton:
            press, self._press = self._press, None
            pos = event.position()
            if (press is not None and self.layer.visible and self.layer.lesions
                    and (pos - press).manhattanLength() <= CLICK_SLOP_PX):
                lesion = self.layer.lesion_at(self.view.viewport, pos.x(), pos.y())
                if lesion is not None:
                    self.picked.emit(lesion.index)
        return False


def _pen(colour: QColor, width: float, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(colour, width, style)
    pen.setCosmetic(True)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    return pen
