"""Lesions as QuPath GeoJSON (``lesions.geojson`` beside ``summary.json``) and back.

Each lesion is a ``Tumor`` polygon (its window-corrected outline, level-0 px) named
``lesion-<n>`` (1 = largest), with its measurements as extra properties, so QuPath shows it
and our viewer can list it without re-running the analysis. On a slide whose tissue is
unlike the model's training data the regions are no metastases: they are written as
``Unreliable AI region`` (grey), without a size class, with the reason, so QuPath never
shows them as tumour.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from histoviewer.core.analysis.lesions import Lesion
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, write_geojson
from histoviewer.core.staging_terms import SIZE_CLASS_RGB

__all__ = ["LESION_COLORS", "UNRELIABLE_CLASS", "lesion_annotations", "write_lesions_geojson"]

# by size class value ("itc", "micro", ...): the palette the viewer draws lesions in
LESION_COLORS = {cls.value: rgb for cls, rgb in SIZE_CLASS_RGB.items()}


UNRELIABLE_CLASS = "Unreliable AI region"
UNRELIABLE_RGB = (150, 150, 150)


def lesion_annotations(lesions: Sequence[Lesion], unreliable: str | None = None) -> list[PolygonAnnotation]:
    """One ``PolygonAnnotation`` per lesion, measurements in ``properties``; ``unreliable``
    (why the AI result cannot be trusted on this slide) makes them unreliable regions."""
    out = []
    for les in lesions:
        props = les.to_dict(with_outline=False)
        props.pop("name")
        if unreliable:
            props["size_class"] = None
            props["unreliable"] = unreliable
            out.append(PolygonAnnotation(name=les.name, l0_points=les.l0_outline, classification=UNRELIABLE_CLASS,
                                         color=UNRELIABLE_RGB, properties=props))
            continue
        out.append(PolygonAnnotation(name=les.name, l0_points=les.l0_outline, classification="Tumor",
                                     color=LESION_COLORS[les.size_class.value], properties=props))
    return out


def write_lesions_geojson(path: str | os.PathLike[str], lesions: Sequence[Lesion],
                          unreliable: str | None = None) -> Path:
    """Write the lesions (possibly none: an empty FeatureCollection) atomically."""
    return write_geojson(path, lesion_annotations(lesions, unreliable))
