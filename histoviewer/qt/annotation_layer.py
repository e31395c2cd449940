"""Paints a slide's annotations over the tiles: class colours, the selection with its
vertex handles and measurement, rulers with their length, and what a tool is drawing.

Only the dirty region is painted, and only what the document's grid index finds there
(``AnnotationDocument.paint_list``): after a pan the view repaints a strip, and the
annotations in that strip are all that is drawn. Outlines come simplified for the zoom
(tiny shapes become dots, drawn in one call per class). Outlines are drawn in level-0
coordinates through the painter's transform with cosmetic pens, so the ``QPolygonF`` of
an outline is built once per simplified outline and reused while panning.
"""

from __future__ import annotations

import numpy as np
import shiboken6
from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen, QPolygonF, QRegion, QTransform

from histoviewer.core.annotations import Annotation, AnnotationDocument, DocumentChange, ShapeKind, measure
from histoviewer.core.annotations.spatial import DisplayShape, display_shape
from histoviewer.core.tiles.viewport import Viewport

UNCLASSIFIED_RGB = (255, 215, 0)
# Outlines are 1 px cosmetic pens: Qt's raster engine draws those on its fast path, while a
# 2 px pen goes through the stroker at ~20x the cost (37 ms vs 1.8 ms for 44 lesion outlines
# at 1:1). Where few shapes are in the dirty region, two more passes shifted by one screen
# pixel right and down make the line 2 px wide for a fraction of that.
PEN_PX = 1.0
THICK_MAX_SHAPES = 400
SELECTED_PEN_PX = 3.0
DOT_PX = 4.0  # side of the square drawn for a shape too small to see at this zoom
DETECTION_DOT_PX = 2.0  # the same for a detection (a cell): small
DETECTION_ALPHA = 170
POINT_RADIUS_PX = 4.0
HANDLE_PX = 7.0  # side of a vertex handle
MIN_HANDLE_SPACING_PX = 12.0  # vertex handles show only when this far apart on average (else a black band)
PAINT_MARGIN_PX = 12  # pens, handles and dots reach this far beyond a shape's bounds
ANTIALIAS_MAX_SHAPES = 400  # smooth outlines cost ~2x: only when few shapes are in the dirty region
MAX_RULER_LABELS = 200
LABEL_BOX = (320, 44)  # the largest label box, screen px (for dirty rectangles)


def polygon_from_array(points: np.ndarray) -> QPolygonF:
    """A ``QPolygonF`` filled from an (n, 2) float array by one memory copy (building it
    point by point costs 30x more, and big outlines have thousands of vertices)."""
    pts = np.ascontiguousarray(points, dtype=np.float64)
    poly = QPolygonF()
    poly.resize(len(pts))
    if len(pts):
        buffer = shiboken6.VoidPtr(poly.data(), pts.nbytes, True)
        np.frombuffer(buffer, np.float64).reshape(-1, 2)[:] = pts
    return poly


def handles_shown(ann: Annotation, scale: float) -> bool:
    """Whether the vertices of ``ann`` are far enough apart on screen (``scale`` screen px per
    level-0 px) to show and drag: a 2,000-vertex lesion outline must be zoomed in first."""
    n = len(ann.l0_points)
    if n <= 4:
        return True
    x0, y0, x1, y1 = ann.l0_bounds()
    return 2 * ((x1 - x0) + (y1 - y0)) * scale / n >= MIN_HANDLE_SPACING_PX


def box_handles(ann: Annotation) -> list[tuple[float, float]]:
    """Vertices a user can drag: the four corners of a box shape, else the defining points."""
    if ann.kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE):
        x0, y0, x1, y1 = ann.box()
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return list(ann.l0_points)


class AnnotationLayer:
    """A ``SlideView`` layer for one ``AnnotationDocument``; ``tools`` (an
    ``AnnotationTools``) supplies the selection and what is being drawn or dragged."""

    def __init__(self, view, doc: AnnotationDocument, tools=None) -> None:
        self.view = view
        self.doc = doc
        self.tools = tools
        self.visible = True
        self._polys: dict[str, tuple[DisplayShape, QPolygonF, tuple[QPolygonF, ...]]] = {}
        self._pens: dict[object, tuple[QPen, QColor]] = {}  # by class name; ("detection", name)
        self._font: QFont | None = None
        self.last_shapes_drawn = 0  # for tests and the benchmark
        self.overlay_rect = QRect()  # screen area of the last overlay drawn (preview, labels)
        # Rulers show their length; a label reaches beyond the line's bounds, so rulers are
        # tracked here rather than found by the region query.
        self._rulers = {a.uid for a in doc.annotations() if a.kind is ShapeKind.LINE}
        self._unsubscribe = doc.subscribe(self._on_change)

    def close(self) -> None:
        self._unsubscribe()

    # -- document changes ---------------------------------------------------------------------
    def _on_change(self, change: DocumentChange) -> None:
        if change.classes_changed:
            self._pens.clear()
        for uid in change.removed:
            self._polys.pop(uid, None)
            self._rulers.discard(uid)
        for uid in change.added + change.changed:
            if self.doc.get(uid).kind is ShapeKind.LINE:
                self._rulers.add(uid)
            else:
                self._rulers.discard(uid)
        # An edit can move a shape anywhere (undo of a move, an import): repaint it all once.
        self.view.update()

    def _pen(self, class_name: str | None) -> tuple[QPen, QColor]:
        found = self._pens.get(class_name)
        if found is None:
            cls = self.doc.class_named(class_name)
            colour = QColor(*(cls.rgb if cls is not None else UNCLASSIFIED_RGB))
            pen = QPen(colour, PEN_PX)
            pen.setCosmetic(True)
            pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
            found = self._pens[class_name] = (pen, colour)
        return found

    def _detection_pen(self, class_name: str | None) -> QPen:
        """Detections (QuPath cells): a thin, translucent outline, so that thousands of them
        read as a texture under the pathologist's own annotations, not as regions."""
        found = self._pens.get(("detection", class_name))
        if found is None:
            colour = QColor(self._pen(class_name)[1])
            colour.setAlpha(DETECTION_ALPHA)
            pen = QPen(colour, PEN_PX, Qt.PenStyle.DotLine)
            pen.setCosmetic(True)
            found = self._pens[("detection", class_name)] = (pen, colour)
        return found[0]

    def colour(self, class_name: str | None) -> QColor:
        return QColor(self._pen(class_name)[1])

    def _polygons(self, shape: DisplayShape) -> tuple[QPolygonF, tuple[QPolygonF, ...]]:
        hit = self._polys.get(shape.uid)
        if hit is not None and hit[0] is shape:
            return hit[1], hit[2]
        ring = polygon_from_array(shape.l0_points)
        holes = tuple(polygon_from_array(h) for h in shape.l0_holes)
        self._polys[shape.uid] = (shape, ring, holes)
        return ring, holes

    # -- painting -------------------------------------------------------------------------------
    def paint(self, painter: QPainter, viewport: Viewport, region: QRegion) -> None:
        if not self.visible:
            return
        scale = viewport.scale
        shapes = self._shapes_in(viewport, region)
        selected = self.tools.selected if self.tools is not None else None
        hidden = self.tools.preview_replaces if self.tools is not None else None
        painter.save()
        painter.setClipRegion(region)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, len(shapes) <= ANTIALIAS_MAX_SHAPES)
        ox, oy = viewport.l0_to_screen(0.0, 0.0)
        to_screen = QTransform(scale, 0, 0, scale, ox, oy)
        dots: dict[str | None, list[np.ndarray]] = {}
        painter.setBrush(Qt.BrushStyle.NoBrush)
        shifts = ((0, 0), (1, 0), (0, 1)) if len(shapes) <= THICK_MAX_SHAPES else ((0, 0),)
        for sx, sy in shifts:
            transform = QTransform(scale, 0, 0, scale, ox + sx, oy + sy)
            painter.setTransform(transform)
            current = object()
            for shape in shapes:
                if shape.uid == hidden:
                    continue
                if shape.detection and (sx or sy):
                    continue  # detections stay thin: one pass
                if shape.kind == "dot":
                    if sx == sy == 0:
                        dots.setdefault((shape.class_name, shape.detection), []).append(shape.l0_points)
                    continue
                key = (shape.class_name, shape.detection)
                if key != current:
                    painter.setPen(self._detection_pen(shape.class_name) if shape.detection
                                   else self._pen(shape.class_name)[0])
                    current = key
                self._draw_shape(painter, shape, scale, ox + sx, oy + sy, transform)
        painter.resetTransform()
        for (class_name, detection), pts in dots.items():
            colour = self._detection_pen(class_name).color() if detection else self._pen(class_name)[1]
            pen = QPen(colour, DETECTION_DOT_PX if detection else DOT_PX, Qt.PenStyle.SolidLine,
                       Qt.PenCapStyle.SquareCap)
            painter.setPen(pen)
            painter.drawPoints(polygon_from_array(np.vstack(pts) * scale + (ox, oy)))
        self.last_shapes_drawn = len(shapes)
        overlay = QRect()
        if len(self._rulers) <= MAX_RULER_LABELS:
            for uid in self._rulers:
                if uid not in (selected, hidden) and region.intersects(self._label_reach(uid, viewport)):
                    overlay |= self._label(painter, self.doc.get(uid), viewport, small=True)
        if selected is not None and selected != hidden and selected in self.doc:
            # Always: its label lies outside its bounds (the clip keeps this cheap).
            overlay |= self._draw_selected(painter, self.doc.get(selected), viewport, to_screen, region)
        overlay |= self._draw_tool_overlay(painter, viewport, to_screen)
        self.overlay_rect = overlay
        painter.restore()

    def _label_reach(self, uid: str, viewport: Viewport) -> QRect:
        x0, y0, x1, y1 = self.doc.get(uid).l0_bounds()
        sx0, sy0 = viewport.l0_to_screen(x0, y0)
        sx1, sy1 = viewport.l0_to_screen(x1, y1)
        return QRect(int(sx0), int(sy0), int(sx1 - sx0) + LABEL_BOX[0] + 12, int(sy1 - sy0) + LABEL_BOX[1] + 12)

    def _shapes_in(self, viewport: Viewport, region: QRegion) -> list[DisplayShape]:
        """What to draw in ``region``, in drawing order, each shape once."""
        per_px = 1.0 / viewport.scale
        rects = list(region)
        found: list[DisplayShape] = []
        seen: set[str] = set()
        for rect in rects:
            r = rect.adjusted(-PAINT_MARGIN_PX, -PAINT_MARGIN_PX, PAINT_MARGIN_PX, PAINT_MARGIN_PX)
            x0, y0 = viewport.screen_to_l0(r.left(), r.top())
            x1, y1 = viewport.screen_to_l0(r.right() + 1, r.bottom() + 1)
            for shape in self.doc.paint_list(x0, y0, x1, y1, per_px):
                if shape.uid not in seen:
                    seen.add(shape.uid)
                    found.append(shape)
        if len(rects) > 1 and len(found) > 1:
            # Rectangles were queried one by one: restore the document's drawing order.
            order = self._drawing_order()
            found.sort(key=lambda s: order.get(s.uid, 0))
        return found

    def _drawing_order(self) -> dict[str, int]:
        cached = getattr(self, "_order", None)
        if cached is None or cached[0] != self.doc.revision:
            cached = self._order = (self.doc.revision, {a.uid: i for i, a in enumerate(self.doc.annotations())})
        return cached[1]

    def _draw_shape(self, painter: QPainter, shape: DisplayShape, scale: float, ox: float, oy: float,
                    to_screen: QTransform) -> None:
        """One shape, painter in level-0 coordinates (points are drawn in screen px)."""
        kind = shape.kind
        if kind in ("rect", "ellipse"):
            (x0, y0), (x1, y1) = shape.l0_points
            box = QRectF(QPointF(x0, y0), QPointF(x1, y1))
            painter.drawRect(box) if kind == "rect" else painter.drawEllipse(box)
        elif kind == "polygon":
            ring, holes = self._polygons(shape)
            painter.drawPolygon(ring)
            for hole in holes:
                painter.drawPolygon(hole)
        elif kind == "line":
            painter.drawPolyline(self._polygons(shape)[0])
        elif kind == "points":
            painter.resetTransform()
            for x, y in shape.l0_points * scale + (ox, oy):
                painter.drawEllipse(QPointF(x, y), POINT_RADIUS_PX, POINT_RADIUS_PX)
            painter.setTransform(to_screen)

    def _draw_selected(self, painter: QPainter, ann: Annotation, viewport: Viewport,
                       to_screen: QTransform, region: QRegion) -> QRect:
        """The selection: a wider outline, white handles on its vertices, its measurement."""
        x0, y0, x1, y1 = ann.l0_bounds()
        sx0, sy0 = viewport.l0_to_screen(x0, y0)
        sx1, sy1 = viewport.l0_to_screen(x1, y1)
        m = PAINT_MARGIN_PX
        if not region.intersects(QRectF(sx0, sy0, sx1 - sx0, sy1 - sy0).toAlignedRect().adjusted(-m, -m, m, m)):
            return self._label(painter, ann, viewport)  # only its label may be in the region
        shape = display_shape(ann, 1.0 / viewport.scale)
        colour = self._pen(ann.class_name)[1]
        painter.setTransform(to_screen)
        wide = QPen(QColor(255, 255, 255), SELECTED_PEN_PX + 2)
        wide.setCosmetic(True)
        painter.setPen(wide)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        self._draw_outline(painter, shape, viewport, to_screen)
        pen = QPen(colour, SELECTED_PEN_PX)
        pen.setCosmetic(True)
        painter.setPen(pen)
        fill = QColor(colour)
        fill.setAlpha(40)
        painter.setBrush(fill if ann.kind.is_area else Qt.BrushStyle.NoBrush)
        self._draw_outline(painter, shape, viewport, to_screen)
        painter.resetTransform()
        painter.setBrush(QColor(255, 255, 255))
        painter.setPen(QPen(QColor(30, 30, 30), 1))
        handles = box_handles(ann)
        if ann.is_region and handles_shown(ann, viewport.scale):
            h = HANDLE_PX
            for x, y in handles:
                sx, sy = viewport.l0_to_screen(x, y)
                painter.drawRect(QRectF(sx - h / 2, sy - h / 2, h, h))
        return self._label(painter, ann, viewport)

    def _draw_outline(self, painter: QPainter, shape: DisplayShape, viewport: Viewport,
                      to_screen: QTransform) -> None:
        if shape.kind == "dot":
            painter.resetTransform()
            sx, sy = viewport.l0_to_screen(*shape.l0_points[0])
            painter.drawEllipse(QPointF(sx, sy), DOT_PX, DOT_PX)
            painter.setTransform(to_screen)
        elif shape.kind == "polygon":  # fresh arrays (the selection's exact outline): no cache
            painter.drawPolygon(polygon_from_array(shape.l0_points))
        else:
            ox, oy = viewport.l0_to_screen(0.0, 0.0)
            self._draw_shape(painter, shape, viewport.scale, ox, oy, to_screen)

    def _label(self, painter: QPainter, ann: Annotation, viewport: Viewport, small: bool = False,
               text: str | None = None) -> QRect:
        """A measurement label beside ``ann`` (rulers: at the end of the line)."""
        if text is None:
            m = measure(ann, self.doc.mpp, is_tumour=self.doc.is_tumour(ann))
            text = m.summary()
            if ann.name and not small:
                text = f"{ann.name}: {text}"
        if not text:
            return QRect()
        if self._font is None:
            self._font = QFont(self.view.font())
            self._font.setPointSizeF(9)
        metrics = QFontMetricsF(self._font)
        if ann.kind is ShapeKind.LINE:
            anchor = viewport.l0_to_screen(*ann.l0_points[-1])
        else:
            x0, y0, x1, y1 = ann.l0_bounds()
            anchor = viewport.l0_to_screen(x1, y1)
        w = min(metrics.horizontalAdvance(text) + 10, LABEL_BOX[0])
        box = QRectF(anchor[0] + 6, anchor[1] + 6, w, metrics.height() + 6)
        painter.resetTransform()
        painter.setFont(self._font)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(255, 255, 255, 225))
        painter.drawRoundedRect(box, 3, 3)
        painter.setPen(QColor(20, 20, 20))
        painter.drawText(box.adjusted(5, 0, -3, 0), Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                         metrics.elidedText(text, Qt.TextElideMode.ElideRight, LABEL_BOX[0] - 10))
        return box.toAlignedRect().adjusted(-1, -1, 1, 1)

    def _draw_tool_overlay(self, painter: QPainter, viewport: Viewport, to_screen: QTransform) -> QRect:
        """What a tool is drawing or dragging, with its live measurement."""
        tools = self.tools
        if tools is None:
            return QRect()
        out = QRect()
        colour = self._pen(tools.preview_class)[1]
        pen = QPen(colour, SELECTED_PEN_PX, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        if tools.preview is not None:
            ann = tools.preview
            painter.setTransform(to_screen)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            self._draw_outline(painter, display_shape(ann, 1.0 / viewport.scale), viewport, to_screen)
            painter.resetTransform()
            out |= self._label(painter, ann, viewport)
        sketch = tools.sketch
        if len(sketch) >= 1:
            painter.setTransform(to_screen)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPolyline(polygon_from_array(np.asarray(sketch, dtype=np.float64)))
            painter.resetTransform()
            painter.setPen(QPen(QColor(30, 30, 30), 1))
            painter.setBrush(QColor(255, 255, 255))
            if tools.sketch_vertices:
                h = HANDLE_PX
                for x, y in sketch[:len(sketch) - (1 if tools.sketch_hover else 0)]:
                    sx, sy = viewport.l0_to_screen(x, y)
                    painter.drawRect(QRectF(sx - h / 2, sy - h / 2, h, h))
        return out
