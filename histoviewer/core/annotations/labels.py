"""From AI lesions to editable annotations, and the slide label from edited annotations.

The lesion detector (another module) gives lesion outlines in level-0 px; one action turns
them into annotations of a tumour class that the pathologist can correct. When asked, the
slide label is recomputed from the tumour annotations as they are now: the worst size class
(macro > micro > ITC), "negative" when there are none, "unknown" when the slide has no
scale (a size class is never guessed). Patient pN staging combines such slide labels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from histoviewer.core.annotations.document import AnnotationDocument
from histoviewer.core.annotations.shapes import Annotation, ShapeKind
from histoviewer.core.staging_terms import SizeClass

__all__ = ["LesionSize", "SlideLabel", "add_lesion_annotations", "lesion_annotations", "slide_label"]

AI_SOURCE_KEY = "source"
_RANK = {SizeClass.ITC: 1, SizeClass.MICRO: 2, SizeClass.MACRO: 3}


def lesion_annotations(l0_polygons: Iterable[Sequence[tuple[float, float]]], *, names: Sequence[str] | None = None,
                       class_name: str = "Tumor", source: str = "ai") -> list[Annotation]:
    """Editable polygon annotations for lesion outlines (level-0 px), tagged with their source."""
    polys = list(l0_polygons)
    names = list(names) if names is not None else [f"AI lesion {i + 1}" for i in range(len(polys))]
    if len(names) != len(polys):
        raise ValueError(f"{len(polys)} lesions but {len(names)} names")
    return [Annotation(ShapeKind.POLYGON, tuple(map(tuple, p)), class_name=class_name, name=n,
                       properties={AI_SOURCE_KEY: source}) for p, n in zip(polys, names)]


def add_lesion_annotations(doc: AnnotationDocument, l0_polygons: Iterable[Sequence[tuple[float, float]]],
                           **kwargs: Any) -> list[str]:
    """Add the lesions to ``doc`` as one undoable step; returns the new uids."""
    return doc.add_many(lesion_annotations(l0_polygons, **kwargs), "Convert AI lesions to annotations")


@dataclass(frozen=True)
class LesionSize:
    uid: str
    name: str
    max_diameter_mm: float | None
    area_mm2: float | None
    size_class: SizeClass

    def to_dict(self) -> dict[str, Any]:
        return {"uid": self.uid, "name": self.name, "max_diameter_mm": self.max_diameter_mm,
                "area_mm2": self.area_mm2, "size_class": self.size_class.value}


@dataclass(frozen=True)
class SlideLabel:
    """``label``: "negative", "itc", "micro", "macro" or "unknown" (no scale)."""

    label: str
    lesions: tuple[LesionSize, ...]

    @property
    def largest_diameter_mm(self) -> float | None:
        sizes = [les.max_diameter_mm for les in self.lesions if les.max_diameter_mm is not None]
        return max(sizes, default=None)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "largest_diameter_mm": self.largest_diameter_mm,
                "lesions": [les.to_dict() for les in self.lesions]}


def slide_label(doc: AnnotationDocument) -> SlideLabel:
    """The slide label from the tumour-class area annotations of ``doc`` as they are now.
    Detections (QuPath cells, tiles) never count, whatever their class."""
    lesions = []
    for ann in doc.annotations():
        if not (ann.is_region and ann.kind.is_area and doc.is_tumour(ann)):
            continue
        m = doc.measure(ann.uid)
        lesions.append(LesionSize(ann.uid, ann.name, m.max_diameter_mm, m.area_mm2,
                                  m.size_class or SizeClass.UNKNOWN))
    if not lesions:
        return SlideLabel("negative", ())
    if any(les.size_class is SizeClass.UNKNOWN for les in lesions):
        return SlideLabel(SizeClass.UNKNOWN.value, tuple(lesions))
    worst = max(lesions, key=lambda les: _RANK[les.size_class]).size_class
    return SlideLabel(worst.value, tuple(lesions))
