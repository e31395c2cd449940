"""Ground-truth files written beside a phantom slide.

For ``slide.tiff``: ``slide.geojson`` (QuPath), ``slide.xml`` (ASAP/CAMELYON) and
``slide.lesions.json`` (measured sizes and classes, with the slide's size, mpp and seed).
All coordinates are level-0 pixels; all files are written atomically and contain no
timestamps, so the same seed gives byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from histoviewer.core.annotations.asap_xml import write_asap_xml
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, write_atomic, write_geojson
from histoviewer.core.phantom.result import PhantomLesion
from histoviewer.core.staging_terms import SizeClass
from histoviewer.core.strict_json import strict_dumps

__all__ = ["GroundTruthPaths", "ground_truth_paths", "write_ground_truth"]

# QuPath's default colour for its "Tumor" class.
TUMOR_RGB = (200, 0, 0)


@dataclass(frozen=True)
class GroundTruthPaths:
    geojson: Path
    xml: Path
    lesions_json: Path


def ground_truth_paths(slide_path: Path) -> GroundTruthPaths:
    stem = slide_path.with_suffix("")
    return GroundTruthPaths(
        geojson=stem.with_name(stem.name + ".geojson"),
        xml=stem.with_name(stem.name + ".xml"),
        lesions_json=stem.with_name(stem.name + ".lesions.json"),
    )


def _annotation(lesion: PhantomLesion) -> PolygonAnnotation:
    return PolygonAnnotation(
        name=lesion.name,
        l0_points=lesion.l0_polygon,
        classification="Tumor",
        color=TUMOR_RGB,
        group="_0",
        properties={
            "size_class": lesion.size_class.value,
            "diameter_mm": round(lesion.diameter_mm, 6),
            "area_mm2": round(lesion.area_mm2, 6),
        },
    )


def write_ground_truth(
    slide_path: Path,
    lesions: tuple[PhantomLesion, ...],
    *,
    width: int,
    height: int,
    mpp: float,
    seed: int,
) -> GroundTruthPaths:
    """Write the three truth files for ``slide_path`` and return their paths."""
    paths = ground_truth_paths(slide_path)
    annotations = [_annotation(les) for les in lesions]
    write_geojson(paths.geojson, annotations)
    write_asap_xml(paths.xml, annotations)
    worst = max((les.size_class for les in lesions), key=_rank, default=None)
    doc = {
        "slide": slide_path.name,
        "generator": "histoviewer phantom",
        "width": width,
        "height": height,
        "mpp": mpp,
        "seed": seed,
        "coordinates": "level-0 pixels, x right, y down",
        "node_label": "negative" if worst is None else worst.value,
        "lesions": [les.to_dict() for les in lesions],
    }
    write_atomic(paths.lesions_json, (strict_dumps(doc, indent=1) + "\n").encode("utf-8"))
    return paths


def _rank(size_class: SizeClass) -> int:
    return {SizeClass.ITC: 1, SizeClass.MICRO: 2, SizeClass.MACRO: 3}.get(size_class, 0)
