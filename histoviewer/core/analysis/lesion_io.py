"""Lesions as QuPath GeoJSON (``lesions.geojson`` beside ``summary.json``) and back.

Each lesion is a ``Tumor`` polygon (its window-corrected outline, level-0 px) named
``lesion-<n>`` (1 = largest), with its measurements as extra properties, so QuPath shows it
and our viewer can list it without re-running the analysis.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from histoviewer.core.analysis.lesions import Lesion
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, write_geojson
from histoviewer.core.staging_terms import SIZE_CLASS_RGB

__all__ = ["LESION_COLORS", "lesion_annotations", "write_lesions_geojson"]

# by size class value ("itc", "micro", ...): the palette the viewer draws lesions in
LESION_COLORS = {cls.value: rgb for cls, rgb in SIZE_CLASS_RGB.items()}


def lesion_annotations(lesions: Sequence[Lesion]) -> list[PolygonAnnotation]:
    """One ``PolygonAnnotation`` per lesion, measurements in ``properties``."""
    out = []
    for les in lesions:
        props = les.to_dict(with_outline=False)
        props.pop("name")
        out.append(PolygonAnnotation(name=les.name, l0_points=les.l0_outline, classification="Tumor",
                                     color=LESION_COLORS[les.size_class.value], properties=props))
    return out


def write_lesions_geojson(path: str | os.PathLike[str], lesions: Sequence[Lesion]) -> Path:
    """Write the lesions (possibly none: an empty FeatureCollection) atomically."""
    return write_geojson(path, lesion_annotations(lesions))
