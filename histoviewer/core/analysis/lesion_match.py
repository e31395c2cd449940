"""Which lesions two analyses of one slide share, and where they disagree (issue 17).

Two lesions are the same finding when their outlines overlap on the slide (level-0 px). A
finding is a connected group of overlapping lesions: usually one of A and one of B, but a
lesion one model sees whole may be two for the other, so a group may hold several of
either. A group with lesions of both models is found by both; one with lesions of one model
only is that model's alone. For a finding of both, the size classes of each side's largest
lesion are compared (a micrometastasis for A that B calls macro is a disagreement on the
stage even though both found it).

Overlap is decided on a raster of ``raster_l0_px`` level-0 px (a quarter of a map cell by
default in ``jobs.compare``): outlines are drawn with Pillow and tested pixel by pixel, only
where their boxes meet. Two outlines closer than one raster pixel may count as touching.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from histoviewer.core.analysis.lesions import Lesion
from histoviewer.core.staging_terms import SizeClass

__all__ = ["FOUND_BY_A", "FOUND_BY_B", "FOUND_BY_BOTH", "Finding", "match_lesions"]

FOUND_BY_A = "a_only"
FOUND_BY_B = "b_only"
FOUND_BY_BOTH = "both"

# size classes from least to most severe (the node label is the most severe lesion's)
_SEVERITY = {SizeClass.ITC: 1, SizeClass.MICRO: 2, SizeClass.MACRO: 3}


@dataclass(frozen=True)
class Finding:
    """A group of overlapping lesions: those of model A and those of model B (either may be
    empty, not both), each side largest first."""

    a: tuple[Lesion, ...]
    b: tuple[Lesion, ...]

    @property
    def found_by(self) -> str:
        if self.a and self.b:
            return FOUND_BY_BOTH
        return FOUND_BY_A if self.a else FOUND_BY_B

    @property
    def size_class_a(self) -> SizeClass | None:
        return _worst(self.a)

    @property
    def size_class_b(self) -> SizeClass | None:
        return _worst(self.b)

    @property
    def classes_differ(self) -> bool:
        """Found by both, but with another size class (of each side's worst lesion)."""
        return self.found_by == FOUND_BY_BOTH and self.size_class_a != self.size_class_b

    @property
    def l0_centroid(self) -> tuple[float, float]:
        """Centre of the group's largest lesion (A's when both), level-0 px."""
        return (self.a or self.b)[0].l0_centroid

    def to_dict(self) -> dict[str, Any]:
        def side(lesions: tuple[Lesion, ...]) -> list[dict[str, Any]]:
            return [
                {
                    "name": les.name,
                    "size_class": les.size_class.value,
                    "diameter_mm": None
                    if les.diameter_mm is None
                    else round(les.diameter_mm, 6),
                    "area_mm2": None
                    if les.area_mm2 is None
                    else round(les.area_mm2, 6),
                    "max_probability": round(les.max_probability, 6),
                    "centroid_l0": [round(v, 2) for v in les.l0_centroid],
                }
                for les in lesions
            ]

        cls_a, cls_b = self.size_class_a, self.size_class_b
        return {
            "found_by": self.found_by,
            "size_class_a": None if cls_a is None else cls_a.value,
            "size_class_b": None if cls_b is None else cls_b.value,
            "classes_differ": self.classes_differ,
            "centroid_l0": [round(v, 2) for v in self.l0_centroid],
            "a": side(self.a),
            "b": side(self.b),
        }


def _worst(lesions: Sequence[Lesion]) -> SizeClass | None:
    classes = [les.size_class for les in lesions if les.size_class in _SEVERITY]
    return (
        max(classes, key=_SEVERITY.__getitem__)
        if classes
        else (lesions[0].size_class if lesions else None)
    )


def _box(lesion: Lesion) -> tuple[float, float, float, float]:
    x, y, w, h = lesion.l0_bbox
    return x, y, x + w, y + h


def _overlap(p: Lesion, q: Lesion, raster_l0_px: float) -> bool:
    """Whether the outlines of ``p`` and ``q`` share a raster pixel."""
    px0, py0, px1, py1 = _box(p)
    qx0, qy0, qx1, qy1 = _box(q)
    x0, y0 = max(px0, qx0) - raster_l0_px, max(py0, qy0) - raster_l0_px
    x1, y1 = min(px1, qx1) + raster_l0_px, min(py1, qy1) + raster_l0_px
    if x0 > x1 or y0 > y1:
        return False
    w = max(1, math.ceil((x1 - x0) / raster_l0_px) + 1)
    h = max(1, math.ceil((y1 - y0) / raster_l0_px) + 1)

    def mask(lesion: Lesion) -> np.ndarray:
        image = Image.new("1", (w, h), 0)
        ring = [
            ((x - x0) / raster_l0_px, (y - y0) / raster_l0_px)
            for x, y in lesion.l0_outline
        ]
        draw = ImageDraw.Draw(image)
        if len(ring) >= 3:
            draw.polygon(ring, fill=1, outline=1)
        else:  # no outline recorded: its centre
            cx, cy = lesion.l0_centroid
            draw.point(((cx - x0) / raster_l0_px, (cy - y0) / raster_l0_px), fill=1)
        return np.asarray(image, bool)

    return bool(np.any(mask(p) & mask(q)))


def match_lesions(
    a: Sequence[Lesion], b: Sequence[Lesion], raster_l0_px: float
) -> tuple[Finding, ...]:
    """The findings of lesions ``a`` (model A) and ``b`` (model B) of one slide (see the
    module docstring): those of both first, then A's alone, then B's alone; within each, by
    the largest diameter."""
    if not raster_l0_px > 0:
        raise ValueError(
            f"the raster must be a positive number of level-0 px, got {raster_l0_px!r}"
        )
    n = len(a) + len(b)
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, les_a in enumerate(a):
        for j, les_b in enumerate(b):
            if _overlap(les_a, les_b, raster_l0_px):
                parent[root(i)] = root(len(a) + j)
    groups: dict[int, tuple[list[Lesion], list[Lesion]]] = {}
    for i in range(n):
        side_a, side_b = groups.setdefault(root(i), ([], []))
        (side_a.append(a[i]) if i < len(a) else side_b.append(b[i - len(a)]))

    def largest_first(lesions: list[Lesion]) -> tuple[Lesion, ...]:
        return tuple(sorted(lesions, key=lambda les: -les.l0_diameter))

    findings = [
        Finding(largest_first(ga), largest_first(gb)) for ga, gb in groups.values()
    ]
    order = {FOUND_BY_BOTH: 0, FOUND_BY_A: 1, FOUND_BY_B: 2}
    return tuple(
        sorted(
            findings, key=lambda f: (order[f.found_by], -(f.a or f.b)[0].l0_diameter)
        )
    )
