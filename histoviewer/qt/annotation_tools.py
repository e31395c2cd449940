"""The drawing and editing tools: a state machine fed by the slide view's mouse and keys.

``AnnotationTools`` is the view's ``input_handler``. It turns gestures into level-0
shapes (``core.annotations.tools``) and document commands; while a gesture goes on it
shows a preview (``preview``, ``sketch``) that the layer paints, and only the release
edits the document, so a drag is one undo step and one autosave.

- Move (M, default): click selects (the topmost annotation under the cursor), drag moves
  it, dragging a white handle moves that vertex (a box corner resizes it), double-click on
  the outline of a selected polygon adds a vertex there, Alt+click on a vertex deletes it,
  right-click opens the class menu; dragging empty space pans.
- Rectangle (R), Ellipse (E), Ruler (L): press, drag, release (Shift: square / circle).
- Polygon (P): click vertex by vertex; double-click or Enter closes it, Backspace drops the
  last vertex, Esc cancels.
- Freehand (B): drag a closed lasso.
- Points (.): each click adds a point (to the selected point set of the same class).

Space held, or the middle button, pans with any tool. Esc cancels a drawing, then returns
to the Move tool, then clears the selection.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, QPoint, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QMenu

from histoviewer.core.annotations import Annotation, AnnotationDocument, ShapeKind
from histoviewer.core.annotations.tools import Tool, freehand_from_stroke, shape_from_drag
from histoviewer.core.tiles.viewport import MAX_SCALE, Viewport
from histoviewer.qt.annotation_layer import HANDLE_PX, LABEL_BOX, PAINT_MARGIN_PX, box_handles, handles_shown

HIT_TOLERANCE_PX = 5.0  # a click this close to a line, a point or an outline picks it
DRAG_THRESHOLD_PX = 3.0  # a press that moves less than this is a click, not a move
FLY_MARGIN = 0.25  # fly-to leaves this fraction of the annotation's size around it
FLY_MIN_L0_PX = 400.0  # fly-to shows at least this much around a point

VIEWER_SHORTCUTS: dict[Tool, str] = {
    Tool.SELECT: "M", Tool.RECTANGLE: "R", Tool.ELLIPSE: "E", Tool.POLYGON: "P",
    Tool.FREEHAND: "B", Tool.POINTS: ".", Tool.RULER: "L",
}
"""QuPath's keys, except the ellipse: QuPath's O shows the overview here (View menu), so
the ellipse is E. F stays "fit to window" and H the heatmap."""

TOOL_LABELS: dict[Tool, str] = {
    Tool.SELECT: "&Move / select", Tool.RECTANGLE: "&Rectangle", Tool.ELLIPSE: "&Ellipse",
    Tool.POLYGON: "&Polygon", Tool.FREEHAND: "&Freehand (brush lasso)", Tool.POINTS: "P&oints",
    Tool.RULER: "R&uler",
}


def fly_to(view, l0_bounds: tuple[float, float, float, float]) -> None:
    """Centre ``view`` on a level-0 box and zoom so it fills the view with a margin."""
    x0, y0, x1, y1 = l0_bounds
    w = max(x1 - x0, FLY_MIN_L0_PX) * (1 + 2 * FLY_MARGIN)
    h = max(y1 - y0, FLY_MIN_L0_PX) * (1 + 2 * FLY_MARGIN)
    scale = min(view.width() / w, view.height() / h, MAX_SCALE)
    view.set_scale(scale)
    view.set_viewport(Viewport((x0 + x1) / 2, (y0 + y1) / 2, view.viewport.scale,
                               view.viewport.screen_w, view.viewport.screen_h))


class AnnotationTools(QObject):
    """Tool state for one slide view and its document (one per tab)."""

    toolChanged = Signal(object)  # Tool
    selectionChanged = Signal(object)  # uid or None
    previewChanged = Signal()  # the shape being drawn or dragged changed
    message = Signal(str)  # a hint or a refusal for the status bar

    def __init__(self, view, doc: AnnotationDocument, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.doc = doc
        self.layer = None  # the AnnotationLayer, for its overlay's screen area
        self.tool = Tool.SELECT
        self.class_name: str | None = "Tumor"  # class of new shapes
        self.selected: str | None = None
        self.preview: Annotation | None = None  # a shape being drawn, moved or reshaped
        self.preview_replaces: str | None = None  # the uid hidden while its preview shows
        self.sketch: list[tuple[float, float]] = []  # polygon so far (+ cursor) or freehand stroke
        self.sketch_vertices = False  # draw handles on the sketch's vertices (polygon)
        self.sketch_hover = False  # the sketch's last point follows the cursor
        self.context_menu: QMenu | None = None
        self._space = False
        self._gesture: tuple | None = None
        self._dirty = QRect()
        self._unsubscribe = doc.subscribe(self._on_change)

    def close(self) -> None:
        self._unsubscribe()

    @property
    def preview_class(self) -> str | None:
        return self.preview.class_name if self.preview is not None else self.class_name

    @property
    def drawing(self) -> bool:
        """A polygon is being clicked or a gesture is under way."""
        return bool(self.sketch) or self._gesture is not None

    # -- state --------------------------------------------------------------------------------
    def set_tool(self, tool: Tool) -> None:
        self.cancel()
        if tool != self.tool:
            self.tool = Tool(tool)
            self.toolChanged.emit(self.tool)
        self._set_cursor(None)

    def set_class(self, class_name: str | None) -> None:
        self.class_name = class_name

    def select(self, uid: str | None) -> None:
        if uid is not None and uid not in self.doc:
            uid = None
        if uid != self.selected:
            self.selected = uid
            self.view.update()
            self.selectionChanged.emit(uid)

    def cancel(self) -> None:
        """Drop the drawing or drag under way (nothing reaches the document)."""
        had = self.drawing or self.preview is not None
        self._gesture = None
        self.sketch = []
        self.sketch_hover = False
        self._set_preview(None)
        if had:
            self._refresh()

    def _on_change(self, _change) -> None:
        if self.selected is not None and self.selected not in self.doc:
            self.select(None)
        elif self.selected is not None:
            self.selectionChanged.emit(self.selected)  # its measurement may have changed

    # -- geometry -------------------------------------------------------------------------------
    def _l0(self, event) -> tuple[float, float]:
        p = event.position()
        return self.view.viewport.screen_to_l0(p.x(), p.y())

    @property
    def _per_px(self) -> float:
        return 1.0 / self.view.viewport.scale

    def _screen_rect(self, l0_bounds) -> QRect:
        x0, y0, x1, y1 = l0_bounds
        vp = self.view.viewport
        sx0, sy0 = vp.l0_to_screen(x0, y0)
        sx1, sy1 = vp.l0_to_screen(x1, y1)
        m = PAINT_MARGIN_PX
        return QRectF(QPointF(sx0, sy0), QPointF(sx1, sy1)).toAlignedRect().adjusted(
            -m, -m, m + LABEL_BOX[0] + 8, m + LABEL_BOX[1])

    def _overlay_rect(self) -> QRect:
        rect = QRect()
        if self.preview is not None:
            rect |= self._screen_rect(self.preview.l0_bounds())
        if self.sketch:
            xs, ys = [p[0] for p in self.sketch], [p[1] for p in self.sketch]
            rect |= self._screen_rect((min(xs), min(ys), max(xs), max(ys)))
        return rect

    def _refresh(self) -> None:
        """Repaint where the overlay was and where it is now, nothing else."""
        new = self._overlay_rect()
        old = self._dirty | (self.layer.overlay_rect if self.layer is not None else QRect())
        self._dirty = new
        dirty = (old | new).intersected(self.view.rect())
        if not dirty.isEmpty():
            self.view.update(dirty)

    def _set_preview(self, ann: Annotation | None, replaces: str | None = None) -> None:
        if self.preview_replaces != replaces and (self.preview_replaces or replaces):
            # The hidden original reappears (or disappears): its whole area changes.
            for uid in (self.preview_replaces, replaces):
                if uid is not None and uid in self.doc:
                    self.view.update(self._screen_rect(self.doc.get(uid).l0_bounds()))
        self.preview, self.preview_replaces = ann, replaces
        self.previewChanged.emit()

    def handle_at(self, event) -> int | None:
        """Index of the selected annotation's handle under the cursor, if any."""
        if self.selected is None or self.selected not in self.doc:
            return None
        p = event.position()
        vp = self.view.viewport
        ann = self.doc.get(self.selected)
        if not ann.is_region or not handles_shown(ann, vp.scale):
            return None  # detections (QuPath cells) are not edited as regions
        for i, (x, y) in enumerate(box_handles(ann)):
            sx, sy = vp.l0_to_screen(x, y)
            if abs(sx - p.x()) <= HANDLE_PX and abs(sy - p.y()) <= HANDLE_PX:
                return i
        return None

    def hit(self, event) -> Annotation | None:
        x, y = self._l0(event)
        return self.doc.hit_test(x, y, HIT_TOLERANCE_PX * self._per_px)

    def _set_cursor(self, event) -> None:
        if self._space:
            self.view.setCursor(Qt.CursorShape.OpenHandCursor)
        elif self.tool is not Tool.SELECT:
            self.view.setCursor(Qt.CursorShape.CrossCursor)
        elif event is not None and self.handle_at(event) is not None:
            self.view.setCursor(Qt.CursorShape.SizeAllCursor)
        elif event is not None and self.hit(event) is not None:
            self.view.setCursor(Qt.CursorShape.PointingHandCursor)
        else:
            self.view.unsetCursor()

    # -- input handler protocol (SlideView.input_handler) ---------------------------------------
    def mouse_press(self, event: QMouseEvent) -> bool:
        if self.view.session is None or self._space:
            return False  # space held: the view pans
        button = event.button()
        if button == Qt.MouseButton.RightButton:
            return self._context_menu(event)
        if button != Qt.MouseButton.LeftButton:
            return False
        l0 = self._l0(event)
        tool = self.tool
        if tool is Tool.SELECT:
            return self._press_select(event, l0)
        if tool is Tool.POLYGON:
            if self.sketch_hover:
                self.sketch.pop()
            self.sketch.append(l0)
            self.sketch.append(l0)  # the rubber band to the cursor
            self.sketch_vertices = self.sketch_hover = True
            self._refresh()
            return True
        if tool is Tool.POINTS:
            self._add_point(l0)
            return True
        if tool is Tool.FREEHAND:
            self.sketch = [l0]
            self.sketch_vertices = self.sketch_hover = False
            self._gesture = ("stroke",)
            return True
        self._gesture = ("drag", l0)  # rectangle, ellipse, ruler
        return True

    def _press_select(self, event, l0) -> bool:
        handle = self.handle_at(event)
        if handle is not None:
            ann = self.doc.get(self.selected)
            if event.modifiers() & Qt.KeyboardModifier.AltModifier:
                self._delete_vertex(ann, handle)
                return True
            self._gesture = ("vertex", ann, handle, event.position())
            return True
        hit = self.hit(event)
        if hit is None:
            self.select(None)
            return False  # dragging empty space pans
        self.select(hit.uid)
        if hit.is_region:  # a detection is selected (to see it, reclassify or delete it), not moved
            self._gesture = ("move", hit, l0, event.position())
        return True

    def mouse_move(self, event: QMouseEvent) -> None:
        g = self._gesture
        if g is None:
            self.mouse_hover(event)
            return
        l0 = self._l0(event)
        if g[0] == "drag":
            square = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self._set_preview(shape_from_drag(self.tool, g[1], l0, class_name=self._new_class(), square=square))
        elif g[0] == "stroke":
            self.sketch.append(l0)
        elif g[0] == "move":
            _, ann, start, press_pos = g
            if self._moved_enough(press_pos, event):
                self._set_preview(ann.translated(l0[0] - start[0], l0[1] - start[1]), ann.uid)
        elif g[0] == "vertex":
            _, ann, index, press_pos = g
            if self._moved_enough(press_pos, event) or self.preview is not None:
                self._set_preview(self._reshaped(ann, index, l0), ann.uid)
        self._refresh()

    @staticmethod
    def _moved_enough(press_pos: QPointF, event) -> bool:
        d = event.position() - press_pos
        return math.hypot(d.x(), d.y()) >= DRAG_THRESHOLD_PX

    def mouse_release(self, event: QMouseEvent) -> None:
        g, self._gesture = self._gesture, None
        if g is None or event.button() != Qt.MouseButton.LeftButton:
            self._gesture = g
            return
        l0 = self._l0(event)
        preview = self.preview
        if g[0] == "drag":
            square = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            ann = shape_from_drag(self.tool, g[1], l0, class_name=self._new_class(), square=square)
            self._set_preview(None)
            self._add(ann)
        elif g[0] == "stroke":
            self.sketch.append(l0)
            ann = freehand_from_stroke(self.sketch, self._per_px, class_name=self._new_class())
            self.sketch = []
            self._add(ann)
        elif g[0] == "move":
            self._set_preview(None)
            if preview is not None:
                _, ann, start, _ = g
                self.doc.move([ann.uid], l0[0] - start[0], l0[1] - start[1])
        elif g[0] == "vertex":
            self._set_preview(None)
            if preview is not None:
                self._commit_reshape(preview)
        self._refresh()
        self._set_cursor(event)

    def mouse_hover(self, event: QMouseEvent) -> None:
        if self.tool is Tool.POLYGON and self.sketch_hover and self.sketch:
            self.sketch[-1] = self._l0(event)
            self._refresh()
        self._set_cursor(event)

    def mouse_double_click(self, event: QMouseEvent) -> bool:
        if event.button() != Qt.MouseButton.LeftButton:
            return False
        if self.tool is Tool.POLYGON:
            if self.sketch:
                self.finish_polygon()
            return True
        if self.tool is Tool.SELECT:
            return self._insert_vertex(event)
        return self.tool is not Tool.SELECT  # drawing tools: no zoom on a quick second click

    def key_press(self, event: QKeyEvent) -> bool:
        key = event.key()
        if key == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space = True
                self._set_cursor(None)
            return True
        if key == Qt.Key.Key_Escape:
            if self.drawing or self.preview is not None:
                self.cancel()
            elif self.tool is not Tool.SELECT:
                self.set_tool(Tool.SELECT)
            else:
                self.select(None)
            return True
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.tool is Tool.POLYGON and self.sketch:
            self.finish_polygon()
            return True
        return False

    def key_release(self, event: QKeyEvent) -> bool:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self._set_cursor(None)
            return True
        return False

    # -- commands -------------------------------------------------------------------------------
    def _new_class(self) -> str | None:
        # A ruler is a measurement, not a finding: it takes no class (and no tumour size).
        return None if self.tool is Tool.RULER else self.class_name

    def _add(self, ann: Annotation | None) -> None:
        if ann is None:
            return
        self.doc.add(ann, f"Draw {ann.kind.value}")
        self.select(ann.uid)

    def _add_point(self, l0) -> None:
        sel = self.doc.get(self.selected) if self.selected in self.doc else None
        if sel is not None and sel.kind is ShapeKind.POINTS and sel.is_region and sel.class_name == self.class_name:
            self.doc.insert_vertex(sel.uid, len(sel.l0_points), *l0)
        else:
            self._add(Annotation(ShapeKind.POINTS, (l0,), class_name=self.class_name))

    def finish_polygon(self) -> None:
        """Close the polygon being clicked (Enter or double-click)."""
        pts = self.sketch[:-1] if self.sketch_hover else list(self.sketch)
        pts = [p for i, p in enumerate(pts) if i == 0 or p != pts[i - 1]]  # a double-click's repeat
        self.cancel()
        if len(pts) < 3:
            self.message.emit("A polygon needs at least 3 vertices")
            return
        self._add(Annotation(ShapeKind.POLYGON, tuple(pts), class_name=self.class_name))

    def delete_key(self) -> None:
        """Delete or Backspace: the polygon's last vertex while drawing, else the selection."""
        if self.tool is Tool.POLYGON and self.sketch:
            keep = len(self.sketch) - (2 if self.sketch_hover else 1)
            cursor = self.sketch[-1]
            self.sketch = self.sketch[:max(keep, 0)]
            if self.sketch and self.sketch_hover:
                self.sketch.append(cursor)
            if not self.sketch:
                self.cancel()
            self._refresh()
            return
        if self.selected is not None:
            self.doc.remove([self.selected])

    @staticmethod
    def _reshaped(ann: Annotation, index: int, l0) -> Annotation:
        if ann.kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE):
            corners = box_handles(ann)
            opposite = corners[(index + 2) % 4]
            return ann.with_changes(l0_points=(opposite, l0))
        return ann.with_vertex(index, *l0)

    def _commit_reshape(self, new: Annotation) -> None:
        try:
            self.doc.replace(new, "Move vertex")
        except ValueError as exc:  # a box dragged flat
            self.message.emit(str(exc))

    def _delete_vertex(self, ann: Annotation, index: int) -> None:
        try:
            self.doc.delete_vertex(ann.uid, index)
        except (ValueError, IndexError) as exc:
            self.message.emit(f"Cannot delete that vertex: {exc}")

    def _insert_vertex(self, event) -> bool:
        """Double-click on the selected ring's or line's outline: a new vertex there."""
        if self.selected is None or self.selected not in self.doc:
            return False
        ann = self.doc.get(self.selected)
        if ann.kind not in (ShapeKind.POLYGON, ShapeKind.FREEHAND, ShapeKind.LINE) or not ann.is_region:
            return False
        x, y = self._l0(event)
        pts = list(ann.l0_points)
        closed = ann.kind.is_ring
        best, best_d = None, HIT_TOLERANCE_PX * self._per_px
        segments = len(pts) if closed else len(pts) - 1
        for i in range(segments):
            (ax, ay), (bx, by) = pts[i], pts[(i + 1) % len(pts)]
            dx, dy = bx - ax, by - ay
            t = 0.0 if dx == dy == 0 else max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
            d = math.hypot(ax + t * dx - x, ay + t * dy - y)
            if d <= best_d:
                best, best_d = i + 1, d
        if best is None:
            return False
        self.doc.insert_vertex(ann.uid, best, x, y)
        return True

    def _context_menu(self, event) -> bool:
        hit = self.hit(event) if self.tool is Tool.SELECT else None
        if hit is None:
            return False
        self.select(hit.uid)
        menu = QMenu(self.view)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        classes = menu.addMenu("Set &class")
        for cls in self.doc.classes:
            action = QAction(cls.name, classes)
            action.setCheckable(True)
            action.setChecked(cls.name == hit.class_name)
            action.triggered.connect(lambda _=False, n=cls.name, u=hit.uid: self.doc.set_class([u], n))
            classes.addAction(action)
        none = classes.addAction("(unclassified)")
        none.triggered.connect(lambda _=False, u=hit.uid: self.doc.set_class([u], None))
        if hit.kind.is_area and hit.kind is not ShapeKind.POLYGON and hit.is_region:
            menu.addAction("Convert to &polygon (edit vertices)").triggered.connect(
                lambda _=False, a=hit: self.doc.replace(self.doc.get(a.uid).as_polygon(), "Convert to polygon"))
        menu.addAction("&Delete").triggered.connect(lambda _=False, u=hit.uid: self.doc.remove([u]))
        self.context_menu = menu
        menu.popup(self.view.mapToGlobal(QPoint(int(event.position().x()), int(event.position().y()))))
        return True
