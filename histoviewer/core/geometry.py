"""Plane geometry for lesion outlines: convex hull, maximum Feret diameter, area, centroid.

Every function works on an ``(N, 2)`` array of ``(x, y)`` points and returns results in the
units of its input (level-0 pixels in, level-0 pixels out); convert to micrometres or
millimetres with the slide's microns-per-pixel in one place, at the caller.
Polygons are given as open rings (the last vertex is not a repeat of the first); a closed
ring is accepted too and gives the same result.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

__all__ = [
    "as_points",
    "convex_hull",
    "max_feret_diameter",
    "max_feret_diameter_brute_force",
    "polygon_area",
    "polygon_centroid",
    "polygon_signed_area",
]


def as_points(points_xy: np.ndarray | list | tuple) -> np.ndarray:
    """``points_xy`` as a float64 ``(N, 2)`` array; raises ``ValueError`` on another shape
    or on non-finite coordinates."""
    pts = np.asarray(points_xy, dtype=np.float64)
    if pts.size == 0:
        return pts.reshape(0, 2)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"expected an (N, 2) array of (x, y) points, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("point coordinates must be finite (found NaN or infinity)")
    return pts


def _open_ring(pts: np.ndarray) -> np.ndarray:
    """Drop the closing vertex of a closed ring so that it is not counted twice."""
    if len(pts) > 1 and np.array_equal(pts[0], pts[-1]):
        return pts[:-1]
    return pts


def convex_hull(points_xy: np.ndarray) -> np.ndarray:
    """Convex hull as an ``(M, 2)`` array in counter-clockwise order (y up), no repeats.

    Qhull for large inputs; Andrew's monotone chain (exact, pure Python) for small or
    degenerate ones (collinear or duplicate points, where Qhull raises). One point gives
    one vertex, collinear points give the two extreme ones.
    """
    pts = as_points(points_xy)
    if len(pts) == 0:
        return pts
    pts = np.unique(pts, axis=0)  # sorted by x, then y
    if len(pts) <= 2:
        return pts
    if len(pts) > 64:
        try:
            hull = ConvexHull(pts)
        except QhullError:  # all points collinear: the exact chain below copes
            pass
        else:
            return pts[hull.vertices]  # counter-clockwise for 2-D input

    def half(seq: np.ndarray) -> list[np.ndarray]:
        chain: list[np.ndarray] = []
        for p in seq:
            while len(chain) >= 2:
                o, a = chain[-2], chain[-1]
                cross = (a[0] - o[0]) * (p[1] - o[1]) - (a[1] - o[1]) * (p[0] - o[0])
                if cross > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower = half(pts)
    upper = half(pts[::-1])
    hull = np.array(lower[:-1] + upper[:-1])
    return hull


def max_feret_diameter(points_xy: np.ndarray) -> float:
    """Largest distance between any two of the points (maximum Feret / caliper diameter).

    Same units as the input. Computed on the convex hull with rotating calipers, O(N log N);
    0.0 for fewer than two distinct points.
    """
    hull = convex_hull(points_xy)
    n = len(hull)
    if n < 2:
        return 0.0
    if n == 2:
        return float(np.hypot(*(hull[1] - hull[0])))
    best2 = 0.0
    k = 1

    def area2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    # For each hull edge (i, i+1) advance k to the vertex farthest from that edge; the
    # diameter is attained by one of these antipodal pairs.
    for i in range(n):
        j = (i + 1) % n
        while area2(hull[i], hull[j], hull[(k + 1) % n]) > area2(hull[i], hull[j], hull[k]):
            k = (k + 1) % n
        for a in (hull[i], hull[j]):
            d = hull[k] - a
            best2 = max(best2, float(d[0] * d[0] + d[1] * d[1]))
    return float(np.sqrt(best2))


def max_feret_diameter_brute_force(points_xy: np.ndarray, chunk: int = 2048) -> float:
    """Reference O(N^2) maximum pairwise distance, for tests and for cross-checking."""
    pts = as_points(points_xy)
    if len(pts) < 2:
        return 0.0
    best2 = 0.0
    for start in range(0, len(pts), chunk):
        block = pts[start : start + chunk]
        d = block[:, None, :] - pts[None, :, :]
        best2 = max(best2, float(np.max(np.einsum("ijk,ijk->ij", d, d))))
    return float(np.sqrt(best2))


def polygon_signed_area(points_xy: np.ndarray) -> float:
    """Shoelace area, positive for counter-clockwise rings (y up). Units: input units squared."""
    pts = _open_ring(as_points(points_xy))
    if len(pts) < 3:
        return 0.0
    # Shift to the first vertex so that large level-0 coordinates do not lose precision.
    x = pts[:, 0] - pts[0, 0]
    y = pts[:, 1] - pts[0, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_area(points_xy: np.ndarray) -> float:
    """Area enclosed by a simple polygon (shoelace formula), in input units squared."""
    return abs(polygon_signed_area(points_xy))


def polygon_centroid(points_xy: np.ndarray) -> tuple[float, float]:
    """Area centroid ``(x, y)`` of a simple polygon, in input units.

    Falls back to the vertex mean for degenerate (zero-area) polygons.
    """
    pts = _open_ring(as_points(points_xy))
    if len(pts) == 0:
        raise ValueError("the centroid of an empty polygon is undefined")
    origin = pts[0]
    rel = pts - origin
    x, y = rel[:, 0], rel[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    a2 = float(cross.sum())
    if len(pts) < 3 or abs(a2) <= 1e-12 * max(1.0, float(np.abs(rel).max()) ** 2):
        mean = pts.mean(axis=0)
        return float(mean[0]), float(mean[1])
    cx = float(((x + xn) * cross).sum()) / (3.0 * a2)
    cy = float(((y + yn) * cross).sum()) / (3.0 * a2)
    return cx + float(origin[0]), cy + float(origin[1])
