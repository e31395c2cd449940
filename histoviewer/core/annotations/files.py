"""Annotation files by extension: ``.geojson``/``.json`` (QuPath GeoJSON), ``.xml`` (ASAP).

``.json`` files in the CAMELYON16 lesion form of ``shared/data`` (``{"positive": [{"name",
"vertices"}], "negative": [...]}``, converted from the challenge's ASAP XML) are read too:
positive polygons into group ``_0`` (tumour) and negative ones into ``_2`` (normal islands
cut out of the tumour), the CAMELYON16 group names, so that writing them as ASAP XML gives
what the challenge's tools expect.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from histoviewer.core.annotations.asap_xml import asap_losses, parse_asap_xml, ring_annotation, save_asap_xml
from histoviewer.core.annotations.classes import default_class_for
from histoviewer.core.annotations.geojson_io import parse_geojson, save_geojson
from histoviewer.core.annotations.model import AnnotationSet, ImportResult
from histoviewer.core.annotations.safe_read import VertexBudget, read_limited
from histoviewer.core.annotations.shapes import Annotation
from histoviewer.core.errors import AnnotationFormatError

__all__ = ["FORMATS", "format_for", "load_annotations", "parse_camelyon_json", "save_annotations"]

FORMATS = {".geojson": "geojson", ".json": "geojson", ".xml": "asap-xml"}


def format_for(path: str | os.PathLike[str]) -> str:
    """``geojson`` or ``asap-xml`` from the extension; ``AnnotationFormatError`` otherwise."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise AnnotationFormatError(
            f"{path}: unknown annotation format {Path(path).suffix!r}; use .geojson/.json (QuPath) or .xml (ASAP)")
    return fmt


def parse_camelyon_json(doc: dict, source: str) -> ImportResult:
    """The CAMELYON16 lesion JSON of ``shared/data/annotations`` as annotations."""
    budget = VertexBudget(source)
    anns: list[Annotation] = []
    warnings: list[str] = []
    for key, group in (("positive", "_0"), ("negative", "_2")):
        items = doc.get(key) or []
        if not isinstance(items, list):
            raise AnnotationFormatError(f"{source}: {key!r} must be a list")
        for i, item in enumerate(items):
            where = f"{key} polygon {i}"
            try:
                verts = item["vertices"]
                budget.annotation(where, len(verts))
                pts = tuple((float(x), float(y)) for x, y in verts)
                ann = ring_annotation(pts, group, str(item.get("name", "")), {}, "Polygon", where, warnings)
                if ann is not None:
                    anns.append(ann)
            except (KeyError, TypeError, ValueError) as exc:
                raise AnnotationFormatError(f"{source}: {where}: {exc}") from None
    classes = (default_class_for("_0", (255, 0, 0)), default_class_for("_2", (0, 160, 0)))
    return ImportResult(AnnotationSet(tuple(anns), classes), source, "camelyon16-json", tuple(warnings))


def load_annotations(path: str | os.PathLike[str]) -> ImportResult:
    """Read an annotation file safely (limits, no XML entities); errors name the file."""
    fmt = format_for(path)
    data = read_limited(path, "annotations")
    if fmt == "asap-xml":
        return parse_asap_xml(data, str(path))
    if Path(path).suffix.lower() == ".json" and data.lstrip()[:1] == b"{":
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            doc = None  # parse_geojson reports it with its line and column
        if isinstance(doc, dict) and "type" not in doc and ("positive" in doc or "negative" in doc):
            return parse_camelyon_json(doc, str(path))
    return parse_geojson(data, str(path))


def save_annotations(path: str | os.PathLike[str], aset: AnnotationSet) -> list[str]:
    """Write ``aset`` in the format of the extension, atomically; returns what the format
    could not keep (ASAP XML has no ellipses, holes or notes), empty for GeoJSON."""
    if format_for(path) == "asap-xml":
        save_asap_xml(path, aset)
        return asap_losses(aset)
    save_geojson(path, aset)
    return []
