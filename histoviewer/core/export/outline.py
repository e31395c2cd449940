"""Outline records drawn over exports, and their drawing into one output tile.

An ``Outline`` is the smallest thing every source of shapes can be turned into: a
level-0 polygon, a colour, an optional label and an optional diameter segment (the two
level-0 points of the maximum Feret diameter). Annotation polygons (``PolygonAnnotation``)
convert with ``outlines_from_annotations``, a whole file with ``outlines_from_annotation_file``;
the lesion list and the full annotation model
convert the same way, so the exporters never learn about either.

Drawing works tile by tile: ``draw_outlines`` gets the tile's offset in output pixels and
the output scale, and draws every outline (clipped by PIL) as if the whole image were one
canvas, so shapes and labels continue seamlessly across tile edges.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import ImageDraw, ImageFont

from histoviewer.core.annotations.asap_xml import NO_GROUP
from histoviewer.core.annotations.files import load_annotations
from histoviewer.core.annotations.geojson_io import DEFAULT_COLOR, PolygonAnnotation
from histoviewer.core.annotations.shapes import ShapeKind
from histoviewer.core.geometry import as_points, convex_hull
from histoviewer.core.staging_terms import SizeClass, classify_diameter_mm
from histoviewer.core.units import l0_px_to_mm

__all__ = [
    "LESION_CLASSES",
    "Outline",
    "OutlineStyle",
    "draw_outlines",
    "max_feret_segment",
    "outlines_from_annotation_file",
    "outlines_from_annotations",
    "outlines_from_document",
]

# Annotation classes whose polygons are lesions: they get a diameter line and label.
LESION_CLASSES = frozenset({"tumor", "tumour", "metastasis", "lesion", "carcinoma", "positive"})
# CAMELYON16 ASAP files put non-tumour islands to exclude in group _2.
EXCLUSION_GROUPS = frozenset({"_2"})
EXCLUSION_COLOR = (40, 120, 255)
UNCLASSIFIED_COLOR = (255, 200, 0)  # shapes without a class (QuPath draws them yellow too)


@dataclass(frozen=True)
class Outline:
    """One shape to draw. ``l0_points``: open ring in level-0 px; ``l0_diameter``: the two
    level-0 end points of the diameter line, or None; ``label`` is drawn at the diameter's
    middle (or the polygon's top-left when there is no diameter)."""

    l0_points: tuple[tuple[float, float], ...]
    color: tuple[int, int, int] = (200, 0, 0)
    label: str = ""
    l0_diameter: tuple[tuple[float, float], tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        pts = as_points(self.l0_points)
        if len(pts) < 2:
            raise ValueError("an outline needs at least two points")
        object.__setattr__(self, "l0_points", tuple((float(x), float(y)) for x, y in pts))
        object.__setattr__(self, "color", tuple(int(c) for c in self.color))

    def l0_bounds(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in level-0 px, including the diameter's end points."""
        pts = np.asarray(self.l0_points)
        if self.l0_diameter is not None:
            pts = np.vstack([pts, np.asarray(self.l0_diameter)])
        return (float(pts[:, 0].min()), float(pts[:, 1].min()),
                float(pts[:, 0].max()), float(pts[:, 1].max()))


@dataclass(frozen=True)
class OutlineStyle:
    """Sizes in output pixels (they do not scale with the resolution: a 2 px line stays
    readable at every um/px)."""

    line_px: int = 2
    diameter_px: int = 2
    font_px: int = 14
    halo_px: int = 2  # white border around label text, readable on any background


def max_feret_segment(points_xy: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """The two points at the maximum Feret distance (same units as the input).

    Searches the convex hull's vertices (the diameter is always between two of them) in
    blocks, so a hull of thousands of vertices needs a few MB.
    """
    hull = convex_hull(points_xy)
    if len(hull) < 2:
        p = tuple(float(v) for v in hull[0]) if len(hull) else (0.0, 0.0)
        return p, p
    best, best_ij = -1.0, (0, 1)
    for start in range(0, len(hull), 1024):
        block = hull[start : start + 1024]
        d = block[:, None, :] - hull[None, :, :]
        d2 = np.einsum("ijk,ijk->ij", d, d)
        k = int(np.argmax(d2))
        if d2.flat[k] > best:
            best = float(d2.flat[k])
            best_ij = (start + k // len(hull), k % len(hull))
    a, b = hull[best_ij[0]], hull[best_ij[1]]
    return (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))


def _is_lesion(ann) -> bool:
    return ann.classification.strip().lower() in LESION_CLASSES and ann.group not in EXCLUSION_GROUPS


def outlines_from_annotations(annotations: Iterable, mpp: float | None,
                              diameters: bool = True) -> list[Outline]:
    """Outlines for ``PolygonAnnotation``s (GeoJSON / ASAP XML files).

    Lesion-like polygons (class in ``LESION_CLASSES``, not a CAMELYON exclusion group) get
    their maximum Feret diameter as a line, labelled ``<name> <d> mm (<size class>)`` when
    the slide's scale ``mpp`` (um per level-0 px) is known, else ``<d> px``.
    """
    out: list[Outline] = []
    for ann in annotations:
        color = EXCLUSION_COLOR if ann.group in EXCLUSION_GROUPS else tuple(ann.color)
        if not (diameters and _is_lesion(ann)):
            out.append(Outline(ann.l0_points, color, ""))
            continue
        a, b = max_feret_segment(np.asarray(ann.l0_points))
        l0_d = math.dist(a, b)
        if mpp is not None:
            d_mm = l0_px_to_mm(l0_d, mpp)
            size = classify_diameter_mm(d_mm)
            label = f"{ann.name} {d_mm:.2f} mm" + (f" ({size.value})" if size is not SizeClass.UNKNOWN else "")
        else:
            label = f"{ann.name} {l0_d:.0f} px"
        out.append(Outline(ann.l0_points, color, label, (a, b)))
    return out


def outlines_from_document(doc) -> list[Outline]:
    """Outlines for the annotations of an open ``AnnotationDocument`` (what the viewer shows).

    Areas and rulers in their class colours (points are left out); tumour-class areas with
    their largest diameter and size class, measured as the annotation panel measures them
    (``doc.measure``: exact for ellipses and rectangles), with a pixel length when the
    slide's scale is unknown.
    """
    out: list[Outline] = []
    for ann in doc.annotations():
        if ann.kind is ShapeKind.POINTS:
            continue
        cls = doc.class_named(ann.class_name)
        color = tuple(cls.rgb) if cls is not None else UNCLASSIFIED_COLOR
        ring = ann.outline()
        if not (ann.kind.is_area and doc.is_tumour(ann)):
            out.append(Outline(ring, color, ann.name if ann.kind is ShapeKind.LINE else ""))
            continue
        a, b = max_feret_segment(np.asarray(ring))
        m = doc.measure(ann.uid)
        if m.max_diameter_mm is None:
            label = f"{ann.name} {math.dist(a, b):.0f} px"
        else:
            label = f"{ann.name} {m.max_diameter_mm:.2f} mm" + (f" ({m.size_class.value})" if m.size_class else "")
        out.append(Outline(ring, color, label, (a, b)))
    return out


@lru_cache(maxsize=8)
def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size_px)


def draw_outlines(draw: ImageDraw.ImageDraw, outlines: Sequence[Outline], *,
                  l0_origin: tuple[float, float], l0_per_px: float,
                  tile_offset: tuple[int, int], tile_size: tuple[int, int],
                  style: OutlineStyle = OutlineStyle()) -> int:
    """Draw ``outlines`` into one tile; returns how many touched it.

    Output pixel ``(u, v)`` of the whole image covers level-0 px ``l0_origin + (u, v) *
    l0_per_px``; the tile starts at output pixel ``tile_offset`` and is ``tile_size``
    (width, height). Outlines whose bounds (plus the label's reach) miss the tile are
    skipped without being drawn.
    """
    ox, oy = l0_origin
    tx, ty = tile_offset
    tw, th = tile_size
    font = _font(style.font_px)
    margin = style.font_px * 40 + style.line_px  # a label can reach this far from its anchor

    def to_px(pts: np.ndarray) -> list[tuple[int, int]]:
        # Round in the whole image's frame, then shift by the (integer) tile offset: PIL
        # rounds half to even, so rounding after the shift would move shapes by a pixel
        # from one tile to the next.
        u = np.floor((pts[:, 0] - ox) / l0_per_px + 0.5).astype(np.int64) - tx
        v = np.floor((pts[:, 1] - oy) / l0_per_px + 0.5).astype(np.int64) - ty
        return list(zip(u.tolist(), v.tolist()))

    drawn = 0
    for o in outlines:
        x0, y0, x1, y1 = o.l0_bounds()
        u0, v0 = (x0 - ox) / l0_per_px - tx, (y0 - oy) / l0_per_px - ty
        u1, v1 = (x1 - ox) / l0_per_px - tx, (y1 - oy) / l0_per_px - ty
        reach = margin if o.label else style.line_px
        if u1 < -reach or v1 < -reach or u0 > tw + reach or v0 > th + reach:
            continue
        drawn += 1
        ring = to_px(np.asarray(o.l0_points))
        draw.line(ring + ring[:1], fill=o.color, width=style.line_px, joint="curve")
        anchor = to_px(np.array([[x0, y0]]))[0]
        anchor = (anchor[0], anchor[1] - 2)
        if o.l0_diameter is not None:
            (a, b) = to_px(np.asarray(o.l0_diameter))
            draw.line([a, b], fill=(0, 0, 0), width=style.diameter_px + 2)
            draw.line([a, b], fill=(255, 255, 255), width=style.diameter_px)
            r = style.diameter_px + 2
            for p in (a, b):
                draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=o.color, outline=(0, 0, 0))
            mid = to_px(np.asarray(o.l0_diameter).mean(axis=0, keepdims=True))[0]
            anchor = (mid[0] + r, mid[1] - r)
        if o.label:
            draw.text(anchor, o.label, fill=(0, 0, 0), font=font, anchor="ld",
                      stroke_width=style.halo_px, stroke_fill=(255, 255, 255))
    return drawn


def outlines_from_annotation_file(path: str | os.PathLike[str], mpp: float | None) -> list[Outline]:
    """Outlines for the area annotations of a GeoJSON, CAMELYON16 JSON or ASAP XML file, read
    safely by ``annotations.files.load_annotations`` (format by extension). As the polygon
    readers of each format did: GeoJSON areas in their class colours, classified by their
    class; ASAP XML (and CAMELYON16 JSON) areas as tumour polygons in their group (``_2``:
    an exclusion)."""
    result = load_annotations(path)
    aset = result.annotation_set
    polygons: list[PolygonAnnotation] = []
    for ann in aset.annotations:
        if not ann.kind.is_area or not ann.is_region:  # detections (QuPath cells) are not outlined as lesions
            continue
        if result.format in ("asap-xml", "camelyon16-json"):  # groups, not classes
            polygons.append(PolygonAnnotation(ann.name, ann.outline(), group=ann.class_name or NO_GROUP))
            polygons += [PolygonAnnotation(f"{ann.name} (hole)", h, group="_2") for h in ann.l0_holes]  # exclusions
        else:
            cls = aset.class_named(ann.class_name)
            polygons.append(PolygonAnnotation.from_annotation(ann, cls.rgb if cls else DEFAULT_COLOR))
    return outlines_from_annotations(polygons, mpp)
