"""Drawing tools without Qt: keyboard shortcuts and the shapes a gesture makes.

The GUI maps mouse positions to level-0 px and calls these; the result goes to
``AnnotationDocument.add``. Shortcuts follow QuPath where it has the tool (R rectangle,
O ellipse, P polygon, B brush, L line, "." points, M move/select).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import numpy as np

from histoviewer.core.annotations.shapes import Annotation, Point, ShapeKind
from histoviewer.core.annotations.spatial import simplify_outline

__all__ = ["TOOL_SHORTCUTS", "Tool", "freehand_from_stroke", "shape_from_drag"]


class Tool(str, enum.Enum):
    SELECT = "select"
    RECTANGLE = "rectangle"
    ELLIPSE = "ellipse"
    POLYGON = "polygon"
    FREEHAND = "freehand"
    POINTS = "points"
    RULER = "ruler"

    @property
    def shape_kind(self) -> ShapeKind | None:
        return {Tool.RECTANGLE: ShapeKind.RECTANGLE, Tool.ELLIPSE: ShapeKind.ELLIPSE,
                Tool.POLYGON: ShapeKind.POLYGON, Tool.FREEHAND: ShapeKind.FREEHAND,
                Tool.POINTS: ShapeKind.POINTS, Tool.RULER: ShapeKind.LINE}.get(self)


TOOL_SHORTCUTS: dict[Tool, str] = {
    Tool.SELECT: "M", Tool.RECTANGLE: "R", Tool.ELLIPSE: "O", Tool.POLYGON: "P",
    Tool.FREEHAND: "B", Tool.POINTS: ".", Tool.RULER: "L",
}
"""QuPath's keys (M move, R rectangle, O ellipse, P polygon, B brush, "." points, L line)."""


def shape_from_drag(tool: Tool, l0_start: Point, l0_end: Point, *, class_name: str | None = None,
                    square: bool = False) -> Annotation | None:
    """The rectangle, ellipse or ruler of a press-drag-release (None for a plain click);
    ``square`` (Shift held) makes the box a square / the ellipse a circle."""
    (x0, y0), (x1, y1) = l0_start, l0_end
    if (x0, y0) == (x1, y1):
        return None
    if tool is Tool.RULER:
        return Annotation(ShapeKind.LINE, (l0_start, l0_end), class_name=class_name)
    if tool not in (Tool.RECTANGLE, Tool.ELLIPSE):
        raise ValueError(f"the {tool.value} tool is not drawn by dragging")
    if square:
        side = max(abs(x1 - x0), abs(y1 - y0))
        x1 = x0 + side * (1 if x1 >= x0 else -1)
        y1 = y0 + side * (1 if y1 >= y0 else -1)
    if x0 == x1 or y0 == y1:
        return None
    return Annotation(tool.shape_kind, ((x0, y0), (x1, y1)), class_name=class_name)


def freehand_from_stroke(l0_points: Sequence[Point], l0_per_screen_px: float, *,
                         class_name: str | None = None) -> Annotation | None:
    """The closed lasso of a brush stroke, thinned to half a screen pixel (mouse events
    arrive every pixel; keeping them all makes huge outlines). None when it encloses
    nothing."""
    pts = np.asarray(l0_points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        return None
    thinned = simplify_outline(pts, 0.5 * l0_per_screen_px, closed=True)
    if len(np.unique(thinned, axis=0)) < 3:
        return None
    return Annotation(ShapeKind.FREEHAND, thinned, class_name=class_name)
