"""One annotation: a shape in level-0 pixels (x right, y down), its class, name and note.

Each kind is stored by the points that define it, so that editing stays exact:

============  ==========================================================================
kind          ``l0_points``
============  ==========================================================================
rectangle     two opposite corners ``(x0, y0), (x1, y1)``, axis-aligned
ellipse       two opposite corners of its axis-aligned bounding box
polygon       the outer ring, open (first vertex not repeated); ``l0_holes`` its holes
freehand      like polygon (the closed lasso of a brush stroke), kept apart for the UI
line          a polyline of two or more vertices (the ruler is a two-point line)
points        one or more points
============  ==========================================================================

``outline()`` gives the polygon to paint or export (ellipses as a 128-gon); measurements
of rectangles and ellipses are analytic (``measure.py``), never taken from that outline.
"""

from __future__ import annotations

import enum
import functools
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from histoviewer.core.annotations.limits import MAX_COORDINATE, MAX_TEXT_CHARS

__all__ = ["Annotation", "ObjectKind", "Point", "Ring", "ShapeKind", "ellipse_outline", "new_uid"]

Point = tuple[float, float]
Ring = tuple[Point, ...]

ELLIPSE_OUTLINE_VERTICES = 128  # area of the 128-gon is 0.04 % below the ellipse's


class ShapeKind(str, enum.Enum):
    RECTANGLE = "rectangle"
    ELLIPSE = "ellipse"
    POLYGON = "polygon"
    FREEHAND = "freehand"
    LINE = "line"
    POINTS = "points"

    @property
    def is_area(self) -> bool:
        return self in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE, ShapeKind.POLYGON, ShapeKind.FREEHAND)

    @property
    def is_ring(self) -> bool:
        """Shapes stored vertex by vertex as a closed ring (vertices can be added/removed)."""
        return self in (ShapeKind.POLYGON, ShapeKind.FREEHAND)


class ObjectKind(str, enum.Enum):
    """What an object is, in QuPath's terms (its GeoJSON ``objectType`` values).

    Only ``ANNOTATION`` objects are regions a pathologist drew or accepted: they are sized,
    classed ITC/micro/macro and make the slide label. Detections, cells and tiles are the
    output of a detector (QuPath's cell detection exports tens of thousands of them, many
    classified "Tumor"); they are shown and counted but never sized or staged. TMA cores
    are grid cells, not lesions either.
    """

    ANNOTATION = "annotation"
    DETECTION = "detection"
    CELL = "cell"
    TILE = "tile"
    TMA_CORE = "tmaCore"

    @property
    def is_region(self) -> bool:
        """True for annotations: the only objects that can be lesions."""
        return self is ObjectKind.ANNOTATION

    @classmethod
    def from_qupath(cls, value: object) -> ObjectKind | None:
        """The kind for a QuPath ``objectType`` (or its v0.2 ``id`` class name); None when unknown."""
        if not isinstance(value, str):
            return None
        return _QUPATH_KINDS.get(value.strip().lower())


_QUPATH_KINDS = {
    "annotation": ObjectKind.ANNOTATION, "pathannotationobject": ObjectKind.ANNOTATION,
    "detection": ObjectKind.DETECTION, "pathdetectionobject": ObjectKind.DETECTION,
    "cell": ObjectKind.CELL, "pathcellobject": ObjectKind.CELL,
    "tile": ObjectKind.TILE, "pathtileobject": ObjectKind.TILE,
    "tmacore": ObjectKind.TMA_CORE, "tma_core": ObjectKind.TMA_CORE, "tmacoreobject": ObjectKind.TMA_CORE,
}


_MIN_POINTS = {
    ShapeKind.RECTANGLE: 2, ShapeKind.ELLIPSE: 2, ShapeKind.POLYGON: 3, ShapeKind.FREEHAND: 3,
    ShapeKind.LINE: 2, ShapeKind.POINTS: 1,
}


def new_uid() -> str:
    """A fresh annotation id (a UUID, as QuPath gives its objects)."""
    return str(uuid.uuid4())


def _ring(points: Any, what: str) -> Ring:
    # numpy checks the values in bulk (real lesion outlines have 10^4 vertices); the tuple
    # of Python floats keeps annotations hashable, comparable and cheap to share.
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: vertices must be (x, y) number pairs ({exc})") from None
    if arr.size == 0:
        return ()
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{what}: vertices must be (x, y) number pairs, got an array of shape {arr.shape}")
    bad = ~np.isfinite(arr).all(axis=1) | (np.abs(arr) > MAX_COORDINATE).any(axis=1)
    if bad.any():
        x, y = arr[int(np.argmax(bad))]
        problem = "non-finite coordinate" if not (math.isfinite(x) and math.isfinite(y)) else \
            f"coordinate beyond {MAX_COORDINATE:g} px"
        raise ValueError(f"{what}: {problem} ({x}, {y})")
    return tuple(map(tuple, arr.tolist()))


def _open(ring: Ring) -> Ring:
    return ring[:-1] if len(ring) > 1 and ring[0] == ring[-1] else ring


def _text(value: Any, what: str) -> str:
    text = "" if value is None else str(value)
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{what} is longer than {MAX_TEXT_CHARS} characters")
    return text


def ellipse_outline(x0: float, y0: float, x1: float, y1: float, n: int = ELLIPSE_OUTLINE_VERTICES) -> Ring:
    """``n`` vertices on the ellipse inscribed in the box, starting at its rightmost point.
    With ``n`` a multiple of 4 the four extreme points are exact, so the box can be read
    back from the outline."""
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
    out = []
    for k in range(n):
        q, r = divmod(k, n // 4) if n % 4 == 0 else (None, None)
        if r == 0:  # exact extremes: no cos(pi/2) = 6e-17 noise
            dx, dy = ((1, 0), (0, 1), (-1, 0), (0, -1))[q]
        else:
            t = 2 * math.pi * k / n
            dx, dy = math.cos(t), math.sin(t)
        out.append((cx + rx * dx, cy + ry * dy))
    return tuple(out)


@dataclass(frozen=True)
class Annotation:
    """An immutable annotation; edits make a new one with the same ``uid``.

    ``class_name`` None means unclassified. ``properties`` keeps values this program does
    not interpret (a foreign file's extra properties, ground-truth sizes) so that they
    survive a round trip; it must be JSON-serialisable. ``object_kind``: an annotation (a
    region: sized and staged when its class is tumour) or a detection/cell/tile/TMA core
    from another tool (shown and counted, never sized or staged: ``is_region`` False).
    """

    kind: ShapeKind
    l0_points: Ring
    class_name: str | None = None
    name: str = ""
    note: str = ""
    l0_holes: tuple[Ring, ...] = ()
    uid: str = field(default_factory=new_uid)
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False)
    object_kind: ObjectKind = ObjectKind.ANNOTATION

    def __post_init__(self) -> None:
        kind = ShapeKind(self.kind)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "object_kind", ObjectKind(self.object_kind))
        what = f"{kind.value} {self.name!r}" if self.name else kind.value
        pts = _ring(self.l0_points, what)
        if kind.is_ring:
            pts = _open(pts)
        if len(pts) < _MIN_POINTS[kind]:
            raise ValueError(f"{what} needs at least {_MIN_POINTS[kind]} vertices, got {len(pts)}")
        if kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE) and len(pts) != 2:
            raise ValueError(f"{what} is defined by exactly 2 corners, got {len(pts)}")
        holes = tuple(_open(_ring(h, f"{what} hole")) for h in self.l0_holes)
        if holes and not kind.is_ring:
            raise ValueError(f"{what}: only polygons can have holes")
        if any(len(h) < 3 for h in holes):
            raise ValueError(f"{what}: a hole needs at least 3 vertices")
        object.__setattr__(self, "l0_points", pts)
        object.__setattr__(self, "l0_holes", holes)
        object.__setattr__(self, "name", _text(self.name, "a name"))
        object.__setattr__(self, "note", _text(self.note, "a note"))
        if self.class_name is not None:
            object.__setattr__(self, "class_name", _text(self.class_name, "a class name") or None)
        object.__setattr__(self, "properties", dict(self.properties))

    @property
    def is_region(self) -> bool:
        """True for annotations (regions that can be lesions); False for detections, cells,
        tiles and TMA cores, which are never sized, staged or edited as regions."""
        return self.object_kind.is_region

    # --- geometry -----------------------------------------------------------------

    @property
    def n_vertices(self) -> int:
        return len(self.l0_points) + sum(len(h) for h in self.l0_holes)

    def box(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of the defining points of a rectangle or ellipse, ordered."""
        (ax, ay), (bx, by) = self.l0_points
        return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)

    def outline(self) -> Ring:
        """Vertices to draw or export: the ring of an area (open), the line, the points."""
        if self.kind is ShapeKind.RECTANGLE:
            x0, y0, x1, y1 = self.box()
            return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
        if self.kind is ShapeKind.ELLIPSE:
            return ellipse_outline(*self.box())
        return self.l0_points

    def l0_bounds(self) -> tuple[float, float, float, float]:
        """Bounding box ``(x0, y0, x1, y1)`` in level-0 px (holes lie inside the ring)."""
        return self._l0_bounds

    @functools.cached_property
    def _l0_bounds(self) -> tuple[float, float, float, float]:
        # Cached on the instance (annotations are immutable): painting asks for it often.
        if self.kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE):
            return self.box()
        arr = np.asarray(self.l0_points)
        x0, y0 = arr.min(axis=0)
        x1, y1 = arr.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)

    # --- edits: each returns a new annotation with the same uid ----------------------

    def with_changes(self, **changes: Any) -> Annotation:
        return replace(self, **changes)

    def translated(self, l0_dx: float, l0_dy: float) -> Annotation:
        def shift(ring: Sequence[Point]) -> Ring:
            return tuple((x + l0_dx, y + l0_dy) for x, y in ring)

        return replace(self, l0_points=shift(self.l0_points), l0_holes=tuple(shift(h) for h in self.l0_holes))

    def with_vertex(self, index: int, l0_x: float, l0_y: float) -> Annotation:
        """Move defining vertex ``index`` (a corner of a rectangle/ellipse box, a vertex of
        a ring, line or point set)."""
        pts = list(self.l0_points)
        if not -len(pts) <= index < len(pts):
            raise IndexError(f"vertex {index} out of range (0..{len(pts) - 1})")
        pts[index] = (l0_x, l0_y)
        return replace(self, l0_points=tuple(pts))

    def with_inserted_vertex(self, index: int, l0_x: float, l0_y: float) -> Annotation:
        """Insert a vertex before ``index`` (``len`` appends); polygons, lines and points."""
        if self.kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE):
            raise ValueError(f"a {self.kind.value} has no vertices to insert; convert it to a polygon")
        pts = list(self.l0_points)
        pts.insert(index, (l0_x, l0_y))
        return replace(self, l0_points=tuple(pts))

    def without_vertex(self, index: int) -> Annotation:
        """Delete vertex ``index``; ``ValueError`` when the shape would become degenerate."""
        if self.kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE):
            raise ValueError(f"a {self.kind.value} has no vertices to delete; convert it to a polygon")
        pts = list(self.l0_points)
        del pts[index]
        return replace(self, l0_points=tuple(pts))

    def as_polygon(self) -> Annotation:
        """The same outline as an editable polygon (rectangles, ellipses, freehand)."""
        if not self.kind.is_area:
            raise ValueError(f"a {self.kind.value} has no area to turn into a polygon")
        return replace(self, kind=ShapeKind.POLYGON, l0_points=self.outline())

    # --- JSON (our own autosave properties) ------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid, "kind": self.kind.value, "name": self.name, "note": self.note,
            "class_name": self.class_name, "l0_points": [list(p) for p in self.l0_points],
            "l0_holes": [[list(p) for p in h] for h in self.l0_holes],
            "properties": dict(self.properties), "object_kind": self.object_kind.value,
        }
