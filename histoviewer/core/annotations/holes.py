"""Polygon holes in formats that have none (ASAP XML, the CAMELYON16 lesion JSON).

CAMELYON16 ground truth draws metastases in groups ``_0`` and ``_1`` and normal tissue to
cut out of them in the exclusion group ``_2``: the challenge's mask tool (ASAP
``AnnotationToMask`` with ``{"_0": 1, "_1": 1, "_2": 0}``, painted in that order) fills the
tumour polygons and then paints ``_2`` back to background. So a hole of a tumour polygon is
written as a ``_2`` polygon, and a ``_2`` polygon lying wholly inside a tumour polygon is
read back as that polygon's hole (inside several nested ones: the smallest). A ``_2``
polygon that crosses a tumour outline or lies in none stays a polygon of class ``_2``.

A hole of a non-tumour polygon must not go to ``_2`` (it would erase tumour drawn under
it): it is written in the polygon's own group, named ``<name> (hole <k>)``, and read back
as a hole of the polygon of that name and group that encloses it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
from skimage.measure import points_in_poly

from histoviewer.core.annotations.shapes import Annotation, ShapeKind
from histoviewer.core.annotations.spatial import GridIndex

__all__ = ["EXCLUSION_GROUP", "attach_holes", "hole_name"]

EXCLUSION_GROUP = "_2"
_HOLE_NAME = re.compile(r"^(?P<parent>.*) \(hole (?P<k>\d+)\)$", re.DOTALL)
MAX_PARENTS_TRIED = 16  # enclosing candidates tried per hole, smallest box first
HOLE_SAMPLE = 256  # hole vertices tested for containment (evenly spaced)
MAX_TEST_WORK = 2_000_000_000  # vertex-edge tests per file: a hostile file cannot take hours


def hole_name(parent_name: str, k: int) -> str:
    """The name a hole gets when written as its own polygon (``k`` from 1)."""
    return f"{parent_name} (hole {k})"


def _box_inside(inner: Annotation, outer: Annotation) -> bool:
    ix0, iy0, ix1, iy1 = inner.l0_bounds()
    ox0, oy0, ox1, oy1 = outer.l0_bounds()
    return ox0 <= ix0 and oy0 <= iy0 and ix1 <= ox1 and iy1 <= oy1


def _sample(ann: Annotation) -> np.ndarray:
    pts = np.asarray(ann.l0_points)
    if len(pts) > HOLE_SAMPLE:
        pts = pts[np.linspace(0, len(pts) - 1, HOLE_SAMPLE).astype(int)]
    return pts


def _area(ann: Annotation) -> float:
    x0, y0, x1, y1 = ann.l0_bounds()
    return (x1 - x0) * (y1 - y0)


def attach_holes(anns: Sequence[Annotation], is_tumour: Callable[[str | None], bool],
                 warnings: list[str] | None = None) -> list[Annotation]:
    """``anns`` with exclusion polygons and named holes moved into the polygons that
    enclose them (see module doc); everything else unchanged and in file order. The work
    is bounded (a few candidate parents per hole, a sample of its vertices, a budget per
    file); holes left over when the budget runs out stay polygons, with a warning."""
    index = GridIndex()
    for i, a in enumerate(anns):
        if a.kind.is_ring and a.is_region:
            index.insert(str(i), a.l0_bounds())
    if not len(index):
        return list(anns)
    holes_of: dict[int, list[tuple[tuple[float, float], ...]]] = {}
    absorbed: set[int] = set()
    work = 0
    left_over = 0
    for j, cand in enumerate(anns):
        if cand.kind is not ShapeKind.POLYGON or not cand.is_region or cand.l0_holes:
            continue
        named = _HOLE_NAME.match(cand.name)
        if cand.class_name != EXCLUSION_GROUP and named is None:
            continue
        if work > MAX_TEST_WORK:
            left_over += 1
            continue
        fits = []
        found = index.query(*cand.l0_bounds())
        work += 1000 * len(found)  # enumerating overlapping boxes is Python work too
        for i in sorted((int(k) for k in found), key=lambda i: _area(anns[i])):
            parent = anns[i]
            if i == j or i in absorbed or not _box_inside(cand, parent):
                continue
            own_hole = (named is not None and parent.class_name == cand.class_name
                        and parent.name == named.group("parent"))  # a hole of a non-tumour polygon
            exclusion = cand.class_name == EXCLUSION_GROUP and is_tumour(parent.class_name)
            if not (own_hole or exclusion):
                continue
            fits.append(i)
            if len(fits) >= MAX_PARENTS_TRIED:
                break
        sample = _sample(cand) if fits else None
        for i in fits:  # smallest first: the innermost enclosing polygon wins
            work += len(sample) * len(anns[i].l0_points)
            if points_in_poly(sample, np.asarray(anns[i].l0_points)).all():
                holes_of.setdefault(i, []).append(cand.l0_points)
                absorbed.add(j)
                break
    if left_over and warnings is not None:
        warnings.append(f"{left_over} exclusion polygons not matched to their enclosing polygons "
                        "(too much geometry to test); kept as polygons")
    out = []
    for i, ann in enumerate(anns):
        if i in absorbed:
            continue
        if i in holes_of:
            ann = ann.with_changes(l0_holes=ann.l0_holes + tuple(holes_of[i]))
        out.append(ann)
    return out
