"""What an annotation file holds: annotations plus the classes they use.

Readers return an ``AnnotationSet`` (never touching an open document); the document takes
one as a single undoable step (``AnnotationDocument.import_set``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from histoviewer.core.annotations.classes import DEFAULT_CLASSES, AnnotationClass, default_class_for, merge_classes
from histoviewer.core.annotations.review import ReviewDecision
from histoviewer.core.annotations.shapes import Annotation

__all__ = ["AnnotationSet", "ImportResult"]


@dataclass(frozen=True)
class AnnotationSet:
    """Annotations in file order and the classes they use (every ``class_name`` is in
    ``classes``; ``with_used_classes`` adds missing ones), and the review decisions on
    the AI's hotspots (``review``)."""

    annotations: tuple[Annotation, ...] = ()
    classes: tuple[AnnotationClass, ...] = DEFAULT_CLASSES
    decisions: tuple[ReviewDecision, ...] = ()

    def class_named(self, name: str | None) -> AnnotationClass | None:
        return next((c for c in self.classes if c.name == name), None)

    def with_used_classes(self) -> AnnotationSet:
        known = {c.name for c in self.classes}
        extra = []
        for ann in self.annotations:
            if ann.class_name is not None and ann.class_name not in known:
                known.add(ann.class_name)
                extra.append(default_class_for(ann.class_name))
        return AnnotationSet(self.annotations, merge_classes(self.classes, extra), self.decisions) if extra else self

    def to_dict(self) -> dict[str, Any]:
        return {"annotations": [a.to_dict() for a in self.annotations],
                "classes": [c.to_dict() for c in self.classes]}


@dataclass(frozen=True)
class ImportResult:
    """A file read: its annotations, what was read from, and what could not be kept as is."""

    annotation_set: AnnotationSet
    source: str
    format: str
    warnings: tuple[str, ...] = field(default=())
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)  # e.g. autosave time

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "format": self.format,
                "annotations": len(self.annotation_set.annotations), "warnings": list(self.warnings)}
