"""Annotation files by extension: ``.geojson``/``.json`` (QuPath GeoJSON, also gzipped:
``.geojson.gz``), ``.xml`` (ASAP).

``.json`` files in the CAMELYON16 lesion form of ``shared/data`` (``{"positive": [{"name",
"vertices"}], "negative": [...]}``, converted from the challenge's ASAP XML) are read too:
positive polygons into group ``_0`` (tumour) and negative ones into ``_2`` (normal islands
cut out of the tumour), the CAMELYON16 group names, so that writing them as ASAP XML gives
what the challenge's tools expect; a negative polygon inside a positive one is its hole,
by the same rule as ASAP XML (``holes``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from histoviewer.core.annotations.asap_xml import asap_losses, parse_asap_xml, ring_annotation, save_asap_xml
from histoviewer.core.annotations.classes import default_class_for
from histoviewer.core.annotations.geojson_io import parse_geojson, save_geojson
from histoviewer.core.annotations.holes import attach_holes
from histoviewer.core.annotations.model import AnnotationSet, ImportResult
from histoviewer.core.annotations.safe_read import VertexBudget, read_limited
from histoviewer.core.annotations.shapes import Annotation
from histoviewer.core.errors import AnnotationFormatError, AnnotationStoreError

__all__ = ["FORMATS", "format_for", "load_annotations", "parse_camelyon_json", "save_annotations"]

FORMATS = {".geojson": "geojson", ".json": "geojson", ".xml": "asap-xml"}


def _suffix(path: str | os.PathLike[str]) -> str:
    """The format extension, looking through ``.gz`` (``a.geojson.gz`` -> ``.geojson``)."""
    p = Path(path)
    if p.suffix.lower() == ".gz":
        p = p.with_suffix("")
    return p.suffix.lower()


def format_for(path: str | os.PathLike[str], *, writing: bool = False) -> str:
    """``geojson`` or ``asap-xml`` from the extension; ``AnnotationFormatError`` otherwise.
    Gzipped GeoJSON (``.geojson.gz``) is read, not written."""
    fmt = FORMATS.get(_suffix(path))
    gz = Path(path).suffix.lower() == ".gz"
    if gz and writing and fmt == "geojson":
        raise AnnotationFormatError(f"{path}: gzipped GeoJSON is read, not written; write .geojson")
    if fmt is None or (gz and fmt != "geojson"):
        raise AnnotationFormatError(
            f"{path}: unknown annotation format {''.join(Path(path).suffixes[-2:])!r}; use .geojson/.json "
            "(QuPath; .geojson.gz is read too) or .xml (ASAP)")
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
    anns = attach_holes(anns, lambda name: name == "_0", warnings)
    classes = (default_class_for("_0", (255, 0, 0)),)
    if any(a.class_name == "_2" for a in anns):
        classes += (default_class_for("_2", (0, 160, 0)),)
    return ImportResult(AnnotationSet(tuple(anns), classes), source, "camelyon16-json", tuple(warnings))


def load_annotations(path: str | os.PathLike[str]) -> ImportResult:
    """Read an annotation file safely (limits, no XML entities); errors name the file."""
    fmt = format_for(path)
    data = read_limited(path, "annotations")
    if fmt == "asap-xml":
        return parse_asap_xml(data, str(path))
    if _suffix(path) == ".json" and data.lstrip()[:1] == b"{":
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            doc = None  # parse_geojson reports it with its line and column
        if isinstance(doc, dict) and "type" not in doc and ("positive" in doc or "negative" in doc):
            return parse_camelyon_json(doc, str(path))
    return parse_geojson(data, str(path))


def save_annotations(path: str | os.PathLike[str], aset: AnnotationSet) -> list[str]:
    """Write ``aset`` in the format of the extension, atomically; returns what the format
    could not keep (ASAP XML has no ellipses, detections or notes) and what had to be
    replaced to be written at all (see ``sanitize``). ``AnnotationFormatError`` when the
    file would be one our reader refuses (nothing is written then); ``AnnotationStoreError``
    naming the file when it cannot be written."""
    try:
        if format_for(path, writing=True) == "asap-xml":
            lost = [f"{len(aset.decisions)} review decision(s) not kept: ASAP XML has no place for them "
                    "(GeoJSON keeps them)"] if aset.decisions else []
            return asap_losses(aset) + lost + save_asap_xml(path, aset)
        return save_geojson(path, aset)
    except OSError as exc:
        raise AnnotationStoreError(f"{path}: cannot write annotations: {exc.strerror or exc}") from exc
