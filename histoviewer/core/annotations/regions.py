"""Annotation files as areas, for code that needs polygons, not editable shapes (ground
truth for FROC, patch labels, masks).

One reader for every format (``files.load_annotations``: QuPath GeoJSON, ASAP XML, the
CAMELYON16 lesion JSON), one rule for holes (``holes``: CAMELYON16's exclusion polygons
inside a tumour polygon are its holes, in every format), and each region says what it is:
its class, whether that class is tumour, whether it is an exclusion, and whether it is an
annotation or a detection (a QuPath cell: never a lesion). What to count as truth is the
caller's rule; lines and point sets have no area and are only counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from histoviewer.core.annotations.classes import default_class_for
from histoviewer.core.annotations.files import load_annotations
from histoviewer.core.annotations.model import AnnotationSet
from histoviewer.core.annotations.shapes import ObjectKind

__all__ = ["EXCLUSION_CLASSES", "Region", "RegionFile", "read_regions", "regions_of"]

EXCLUSION_CLASSES = frozenset({"_2", "exclusion"})  # lower case: CAMELYON16's group, its QuPath name


@dataclass(frozen=True)
class Region:
    """One area in level-0 px: ``exterior`` an open ring ``(N, 2)``, ``holes`` open rings.

    ``is_tumour``: its class is a tumour class (``Tumor``, ``_0``, ``_1``, ... or flagged so
    in the file's class table). ``is_exclusion``: its class is an exclusion (``_2``,
    ``Exclusion``) that lies inside no tumour polygon (those became holes). ``object_kind``:
    ``ANNOTATION`` or a detection kind (``is_region`` False: never a lesion).
    """

    name: str
    class_name: str | None
    is_tumour: bool
    is_exclusion: bool
    object_kind: ObjectKind
    exterior: np.ndarray
    holes: tuple[np.ndarray, ...] = ()

    @property
    def is_region(self) -> bool:
        return self.object_kind.is_region


@dataclass(frozen=True)
class RegionFile:
    """The regions of one file, what format it was, what could not be kept, and how many
    objects had no area (lines, point sets)."""

    source: str
    format: str
    regions: tuple[Region, ...]
    warnings: tuple[str, ...] = ()
    without_area: int = 0


def regions_of(aset: AnnotationSet) -> tuple[tuple[Region, ...], int]:
    """The areas of ``aset`` (rectangles and ellipses as their outlines) and how many of
    its objects have none."""
    out = []
    for ann in aset.annotations:
        if not ann.kind.is_area:
            continue
        name = ann.class_name
        cls = aset.class_named(name) if name is not None else None
        if cls is None and name is not None:
            cls = default_class_for(name)
        out.append(Region(
            name=ann.name, class_name=name, is_tumour=bool(cls and cls.is_tumour),
            is_exclusion=name is not None and name.strip().lower() in EXCLUSION_CLASSES,
            object_kind=ann.object_kind, exterior=np.asarray(ann.outline(), np.float64).reshape(-1, 2),
            holes=tuple(np.asarray(h, np.float64) for h in ann.l0_holes)))
    return tuple(out), len(aset.annotations) - len(out)


def read_regions(path: str | os.PathLike[str]) -> RegionFile:
    """The regions of an annotation file of any supported format (see module doc);
    ``AnnotationFormatError`` naming the file when it cannot be read."""
    result = load_annotations(path)
    regions, without_area = regions_of(result.annotation_set)
    return RegionFile(result.source, result.format, regions, result.warnings, without_area)
