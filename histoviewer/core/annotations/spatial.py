"""What to paint: a grid index of annotation bounding boxes and level-of-detail outlines.

The viewer asks, on every repaint, which annotations meet the visible level-0 rectangle,
and for a drawable outline of each at the current zoom. With thousands of annotations a
scan of all bounding boxes in Python is too slow for a fluid drag; the grid answers from
the cells under the view. Outlines are simplified (grid thinning, then Douglas-Peucker) to
half a screen pixel, and shapes smaller than ``TINY_SCREEN_PX`` on screen become a dot.
Simplified outlines are cached per annotation object and zoom octave, so panning costs
nothing and an edited annotation (a new object) is simplified again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from histoviewer.core.annotations.shapes import Annotation, ShapeKind

__all__ = ["DisplayShape", "GridIndex", "LodCache", "TINY_SCREEN_PX", "display_shape", "simplify_outline"]

Bounds = tuple[float, float, float, float]

TINY_SCREEN_PX = 3.0
"""Shapes whose bounding box is smaller than this on screen are drawn as a dot."""

_DP_MIN_VERTICES = 256  # below this, Douglas-Peucker costs more than drawing the vertices


class GridIndex:
    """Bounding boxes of items in square level-0 cells of ``l0_cell_px``.

    Items covering more than ``max_cells`` cells (a huge lesion outline) are kept in a
    short list that every query checks, so that one item never fills thousands of cells.
    A query over more than ``scan_cells`` cells (the whole slide in view) scans all boxes
    with numpy instead of visiting cells.
    """

    def __init__(self, l0_cell_px: float = 2048.0, max_cells: int = 64, scan_cells: int = 1024) -> None:
        self.l0_cell_px = float(l0_cell_px)
        self.max_cells = max_cells
        self.scan_cells = scan_cells
        self._bounds: dict[str, Bounds] = {}
        self._cells: dict[tuple[int, int], set[str]] = {}
        self._large: set[str] = set()
        self._arrays: tuple[list[str], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self._bounds)

    def _cell_range(self, b: Bounds) -> tuple[int, int, int, int]:
        c = self.l0_cell_px
        return (math.floor(b[0] / c), math.floor(b[1] / c), math.floor(b[2] / c), math.floor(b[3] / c))

    def insert(self, key: str, bounds: Bounds) -> None:
        if key in self._bounds:
            self.remove(key)
        self._bounds[key] = bounds
        self._arrays = None
        i0, j0, i1, j1 = self._cell_range(bounds)
        if (i1 - i0 + 1) * (j1 - j0 + 1) > self.max_cells:
            self._large.add(key)
            return
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                self._cells.setdefault((i, j), set()).add(key)

    def remove(self, key: str) -> None:
        bounds = self._bounds.pop(key, None)
        if bounds is None:
            return
        self._arrays = None
        if key in self._large:
            self._large.discard(key)
            return
        i0, j0, i1, j1 = self._cell_range(bounds)
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                cell = self._cells.get((i, j))
                if cell is not None:
                    cell.discard(key)
                    if not cell:
                        del self._cells[(i, j)]

    def clear(self) -> None:
        self._bounds.clear()
        self._cells.clear()
        self._large.clear()
        self._arrays = None

    def query(self, l0_x0: float, l0_y0: float, l0_x1: float, l0_y1: float) -> set[str]:
        """Keys whose bounding box meets the rectangle (edges touching count)."""
        i0, j0, i1, j1 = self._cell_range((l0_x0, l0_y0, l0_x1, l0_y1))
        if (i1 - i0 + 1) * (j1 - j0 + 1) > self.scan_cells:
            return self._scan(l0_x0, l0_y0, l0_x1, l0_y1)
        found: set[str] = set(self._large)
        for i in range(i0, i1 + 1):
            for j in range(j0, j1 + 1):
                cell = self._cells.get((i, j))
                if cell:
                    found |= cell
        b = self._bounds
        return {k for k in found
                if b[k][0] <= l0_x1 and b[k][2] >= l0_x0 and b[k][1] <= l0_y1 and b[k][3] >= l0_y0}

    def _scan(self, x0: float, y0: float, x1: float, y1: float) -> set[str]:
        if self._arrays is None:
            keys = list(self._bounds)
            arr = np.array([self._bounds[k] for k in keys], dtype=np.float64).reshape(-1, 4)
            self._arrays = (keys, arr)
        keys, arr = self._arrays
        hit = (arr[:, 0] <= x1) & (arr[:, 2] >= x0) & (arr[:, 1] <= y1) & (arr[:, 3] >= y0)
        return {keys[i] for i in np.flatnonzero(hit)}


@dataclass(frozen=True)
class DisplayShape:
    """What to draw for one annotation at one zoom, in level-0 px.

    ``kind``: ``dot`` (draw a small marker at ``l0_points[0]``), ``rect`` / ``ellipse``
    (``l0_points`` are the box corners: draw natively), ``polygon`` (closed ring, plus
    ``l0_holes``), ``line`` (open polyline), ``points``. ``detection``: a detection (a QuPath
    cell), drawn thin and never with editing handles.
    """

    uid: str
    kind: str
    l0_points: np.ndarray
    l0_holes: tuple[np.ndarray, ...]
    class_name: str | None
    detection: bool = False


def simplify_outline(points: Iterable, l0_tolerance: float, closed: bool) -> np.ndarray:
    """Fewer vertices, none moved by more than ``l0_tolerance``.

    First a vectorised pass drops every vertex in the same ``l0_tolerance`` grid cell as
    the vertex kept before it (O(n) numpy: a 2,000-vertex outline at a coarse zoom drops to
    a few dozen in microseconds); Douglas-Peucker then straightens what is
    left when that is still long. Run once per annotation and zoom octave (``LodCache``).
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) <= 4 or l0_tolerance <= 0:
        return pts
    cells = np.floor(pts / l0_tolerance)
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = np.any(cells[1:] != cells[:-1], axis=1)
    reduced = pts[keep]
    if len(reduced) < 3:
        return pts[[0, len(pts) // 2]] if not closed else pts[[0, len(pts) // 3, 2 * len(pts) // 3]]
    if len(reduced) <= _DP_MIN_VERTICES:
        return reduced
    if closed:
        reduced = np.vstack([reduced, reduced[:1]])
    out = reduced[_douglas_peucker(reduced, l0_tolerance / 2)]
    return out[:-1] if closed and len(out) > 1 else out


def _douglas_peucker(pts: np.ndarray, tolerance: float) -> np.ndarray:
    """Indices kept by Douglas-Peucker, each split found with one numpy pass over its span.

    scikit-image's ``approximate_polygon`` took 25 ms on a 500-vertex outline here (it
    rebuilds arrays per split); this takes well under 1 ms, so the first paint after a
    zoom does not stall on hundreds of outlines.
    """
    keep = np.zeros(len(pts), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(pts) - 1)]
    budget = len(pts) // 4  # a jagged outline keeps nearly every vertex: stop paying for splits
    while stack:
        budget -= 1
        if budget < 0:
            return np.arange(len(pts))
        i, j = stack.pop()
        if j <= i + 1:
            continue
        a, b = pts[i], pts[j]
        seg = pts[i + 1:j] - a
        d = b - a
        norm = float(np.hypot(d[0], d[1]))
        if norm == 0.0:  # closed ring: distance to the shared end point
            dist = np.hypot(seg[:, 0], seg[:, 1])
        else:
            dist = np.abs(seg[:, 0] * d[1] - seg[:, 1] * d[0]) / norm
        k = int(np.argmax(dist))
        if dist[k] > tolerance:
            k += i + 1
            keep[k] = True
            stack.append((i, k))
            stack.append((k, j))
    return np.flatnonzero(keep)


def display_shape(ann: Annotation, l0_per_screen_px: float) -> DisplayShape:
    """The outline of ``ann`` to draw when one screen pixel covers ``l0_per_screen_px``."""
    x0, y0, x1, y1 = ann.l0_bounds()
    kind = ann.kind
    if kind is not ShapeKind.POINTS and max(x1 - x0, y1 - y0) < TINY_SCREEN_PX * l0_per_screen_px:
        centre = np.array([[(x0 + x1) / 2, (y0 + y1) / 2]])
        return DisplayShape(ann.uid, "dot", centre, (), ann.class_name, not ann.is_region)
    tol = 0.5 * l0_per_screen_px
    if kind in (ShapeKind.RECTANGLE, ShapeKind.ELLIPSE):
        box = np.array([[x0, y0], [x1, y1]])
        return DisplayShape(ann.uid, "rect" if kind is ShapeKind.RECTANGLE else "ellipse", box, (), ann.class_name, not ann.is_region)
    if kind.is_ring:
        holes = tuple(simplify_outline(h, tol, True) for h in ann.l0_holes
                      if max(np.ptp(np.asarray(h), axis=0)) >= TINY_SCREEN_PX * l0_per_screen_px)
        return DisplayShape(ann.uid, "polygon", simplify_outline(ann.l0_points, tol, True), holes, ann.class_name, not ann.is_region)
    if kind is ShapeKind.LINE:
        return DisplayShape(ann.uid, "line", simplify_outline(ann.l0_points, tol, False), (), ann.class_name, not ann.is_region)
    return DisplayShape(ann.uid, "points", np.asarray(ann.l0_points, dtype=np.float64), (), ann.class_name, not ann.is_region)


class LodCache:
    """``display_shape`` results per annotation, for the zoom octave last asked.

    The tolerance is rounded down to a power of two of ``l0_per_screen_px`` so that panning
    and small zoom steps hit the cache; a different annotation object (an edit) misses.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Annotation, float, DisplayShape]] = {}

    def get(self, ann: Annotation, l0_per_screen_px: float) -> DisplayShape:
        octave = 2.0 ** math.floor(math.log2(max(l0_per_screen_px, 1e-9)))
        hit = self._cache.get(ann.uid)
        if hit is not None and hit[0] is ann and hit[1] == octave:
            return hit[2]
        shape = display_shape(ann, octave)
        self._cache[ann.uid] = (ann, octave, shape)
        return shape

    def discard(self, uid: str) -> None:
        self._cache.pop(uid, None)

    def clear(self) -> None:
        self._cache.clear()
