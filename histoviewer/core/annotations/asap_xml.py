"""Annotations as ASAP XML, the format of the CAMELYON16/17 ground truth.

::

    <ASAP_Annotations>
      <Annotations>
        <Annotation Name="_0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
          <Coordinates>
            <Coordinate Order="0" X="12345.5" Y="67890.25"/>
            ...
      <AnnotationGroups>
        <Group Name="_0" PartOfGroup="None" Color="#ff0000"><Attributes/></Group>

Coordinates are level-0 pixels; a group is a class (``PartOfGroup="None"``: unclassified).
CAMELYON16 puts tumour in groups ``_0`` and ``_1`` and normal islands to exclude in ``_2``.

ASAP types and our kinds: Polygon and Spline <-> polygon (Spline kept as a property),
Rectangle <-> rectangle, Dot and PointSet <-> points, Measurement <-> line. ASAP has no
ellipse, freehand or holes: ellipses and freehand shapes are written as polygons and holes
as separate polygons of the same group (``asap_losses`` lists what a file would lose).
Numbers are written in Python's shortest round-trip form, so every vertex read from a
file is written back with the same value.

Reading is for untrusted files: ``defusedxml`` with DTDs forbidden (no entity expansion,
no external entities), streamed with ``iterparse`` so that the annotation and vertex
limits stop a huge file early; errors name the file and the parser's line and column or
the annotation at fault.
"""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from histoviewer.core.annotations.classes import (
    DEFAULT_CLASSES,
    AnnotationClass,
    default_class_for,
    parse_color,
    rgb_to_hex,
)
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, write_atomic
from histoviewer.core.annotations.limits import MAX_TOTAL_VERTICES, MAX_VERTICES_PER_ANNOTATION
from histoviewer.core.annotations.model import AnnotationSet, ImportResult
from histoviewer.core.annotations.safe_read import VertexBudget, read_limited
from histoviewer.core.annotations.shapes import Annotation, ShapeKind
from histoviewer.core.errors import AnnotationFormatError

__all__ = [
    "asap_losses",
    "asap_xml_bytes",
    "load_asap_xml",
    "parse_asap_xml",
    "read_asap_xml",
    "save_asap_xml",
    "write_asap_xml",
]

ASAP_TYPE_KEY = "asap_type"  # property keeping a Spline / one-point PointSet / odd Rectangle
ASAP_COLOR_KEY = "asap_color"  # property keeping an annotation's own Color
ASAP_CLOSED_KEY = "asap_closed"  # the file repeated the first vertex at the end
ANNOTATION_COLOR = "#F4FA58"  # the yellow CAMELYON16 annotations use
NO_GROUP = "None"


def _fmt(v: float) -> str:
    # Shortest text that reads back as the same float ("71924", "67890.1234").
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _asap_type(ann: Annotation) -> tuple[str, tuple[tuple[float, float], ...]]:
    kept = ann.properties.get(ASAP_TYPE_KEY)
    if ann.kind.is_ring:
        pts = ann.l0_points + ann.l0_points[:1] if ann.properties.get(ASAP_CLOSED_KEY) else ann.l0_points
        return ("Spline" if kept == "Spline" else "Polygon"), pts
    if ann.kind is ShapeKind.RECTANGLE:
        return "Rectangle", ann.outline()
    if ann.kind is ShapeKind.ELLIPSE:
        return "Polygon", ann.outline()
    if ann.kind is ShapeKind.LINE:
        return "Measurement", ann.l0_points
    if len(ann.l0_points) == 1 and kept != "PointSet":
        return "Dot", ann.l0_points
    return "PointSet", ann.l0_points


def asap_losses(aset: AnnotationSet) -> list[str]:
    """What writing ``aset`` as ASAP XML would not keep (ASAP has no such thing)."""
    counts: dict[str, int] = {}
    for ann in aset.annotations:
        if ann.kind in (ShapeKind.ELLIPSE, ShapeKind.FREEHAND):
            counts[f"{ann.kind.value}s written as polygons"] = counts.get(f"{ann.kind.value}s written as polygons", 0) + 1
        if ann.l0_holes:
            counts["polygons with holes (holes written as separate polygons)"] = counts.get(
                "polygons with holes (holes written as separate polygons)", 0) + 1
        if ann.note:
            counts["notes dropped"] = counts.get("notes dropped", 0) + 1
    return [f"{n} {what}" for what, n in counts.items()]


def asap_xml_bytes(aset: AnnotationSet) -> bytes:
    """The ASAP XML document for ``aset`` (UTF-8, with XML declaration)."""
    classes = {c.name: c for c in aset.classes}
    root = ET.Element("ASAP_Annotations")
    anns = ET.SubElement(root, "Annotations")
    used: dict[str, None] = {}
    for ann in aset.annotations:
        group = ann.class_name or NO_GROUP
        if ann.class_name is not None:
            used.setdefault(ann.class_name, None)
        cls = classes.get(ann.class_name or "") or (default_class_for(ann.class_name) if ann.class_name else None)
        color = ann.properties.get(ASAP_COLOR_KEY) or (rgb_to_hex(cls.rgb) if cls else ANNOTATION_COLOR)
        asap_type, pts = _asap_type(ann)
        rings = [(ann.name, asap_type, pts)]
        rings += [(f"{ann.name} (hole {k + 1})", "Polygon", h) for k, h in enumerate(ann.l0_holes)]
        for name, typ, ring in rings:
            el = ET.SubElement(anns, "Annotation", {"Name": name, "Type": typ, "PartOfGroup": group, "Color": str(color)})
            coords = ET.SubElement(el, "Coordinates")
            for order, (x, y) in enumerate(ring):
                ET.SubElement(coords, "Coordinate", {"Order": str(order), "X": _fmt(x), "Y": _fmt(y)})
    default_names = {c.name for c in DEFAULT_CLASSES}
    groups = [c for c in aset.classes if c.name in used or c.name not in default_names]
    groups += [default_class_for(n) for n in used if n not in classes]
    grp_root = ET.SubElement(root, "AnnotationGroups")
    for cls in groups:
        grp = ET.SubElement(grp_root, "Group", {"Name": cls.name, "PartOfGroup": NO_GROUP, "Color": rgb_to_hex(cls.rgb)})
        ET.SubElement(grp, "Attributes")
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def save_asap_xml(path: str | os.PathLike[str], aset: AnnotationSet) -> Path:
    """Write ``aset`` as an ASAP/CAMELYON XML file (atomically)."""
    return write_atomic(path, asap_xml_bytes(aset))


# --- reading -------------------------------------------------------------------------------

def _annotation(i: int, el: Any, coords: list[tuple[int, float, float]], warnings: list[str]) -> Annotation | None:
    name = el.get("Name", "")
    typ = el.get("Type", "Polygon")
    group = el.get("PartOfGroup", NO_GROUP)
    props: dict[str, Any] = {}
    if el.get("Color"):
        props[ASAP_COLOR_KEY] = el.get("Color")
    orders = [o for o, _, _ in coords]
    if orders != sorted(orders):
        coords = sorted(coords, key=lambda c: c[0])  # stable: equal orders keep file order
    pts = tuple((x, y) for _, x, y in coords)
    class_name = None if group == NO_GROUP else group
    if typ in ("Polygon", "Spline"):
        kind = ShapeKind.POLYGON
        if typ == "Spline":
            props[ASAP_TYPE_KEY] = "Spline"
    elif typ == "Rectangle":
        kind = ShapeKind.POLYGON
        if len(pts) == 4:
            candidate = Annotation(ShapeKind.RECTANGLE, (pts[0], pts[2]))
            if candidate.outline() == pts:
                kind, pts = ShapeKind.RECTANGLE, (pts[0], pts[2])
        if kind is ShapeKind.POLYGON:
            props[ASAP_TYPE_KEY] = "Rectangle"
    elif typ in ("Dot", "PointSet"):
        kind = ShapeKind.POINTS
        if typ == "PointSet" and len(pts) == 1:
            props[ASAP_TYPE_KEY] = "PointSet"
    elif typ == "Measurement":
        kind = ShapeKind.LINE
    else:
        warnings.append(f"annotation {i} ({name!r}): type {typ!r} not supported; skipped")
        return None
    if kind.is_ring and len(pts) > 1 and pts[0] == pts[-1]:
        props[ASAP_CLOSED_KEY] = True  # the file repeats the first vertex; write it back the same way
    return Annotation(kind, pts, class_name=class_name, name=name, properties=props)


def parse_asap_xml(data: bytes, source: str = "<ASAP XML>") -> ImportResult:
    """Annotations from ASAP XML bytes; ``AnnotationFormatError`` naming ``source`` and the
    parser position (syntax, DTDs, entities) or the annotation (content) at fault."""
    budget = VertexBudget(source)
    annotations: list[Annotation] = []
    groups: dict[str, AnnotationClass] = {}
    warnings: list[str] = []
    coords: list[tuple[int, float, float]] = []
    n_ann = 0
    depth_tags: list[str] = []
    try:
        for event, el in iterparse(io.BytesIO(data), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                if not depth_tags and el.tag != "ASAP_Annotations":
                    raise AnnotationFormatError(f"{source}: root element is {el.tag!r}, not ASAP_Annotations")
                depth_tags.append(el.tag)
                if el.tag == "Annotation":
                    coords = []
                continue
            depth_tags.pop()
            if el.tag == "Coordinate":
                try:
                    order = int(el.get("Order", len(coords)))
                    x, y = float(el.attrib["X"]), float(el.attrib["Y"])
                except KeyError as exc:
                    raise AnnotationFormatError(
                        f"{source}: annotation {n_ann} coordinate {len(coords)}: missing attribute {exc}") from None
                except ValueError as exc:
                    raise AnnotationFormatError(
                        f"{source}: annotation {n_ann} coordinate {len(coords)}: {exc}") from None
                coords.append((order, x, y))
                if len(coords) > MAX_VERTICES_PER_ANNOTATION or budget.vertices + len(coords) > MAX_TOTAL_VERTICES:
                    budget.annotation(f"annotation {n_ann}", len(coords))  # raises: stop early
            elif el.tag == "Annotation":
                budget.annotation(f"annotation {n_ann} ({el.get('Name', '')!r})", len(coords))
                try:
                    ann = _annotation(n_ann, el, coords, warnings)
                except ValueError as exc:
                    raise AnnotationFormatError(f"{source}: annotation {n_ann} ({el.get('Name', '')!r}): {exc}") from None
                if ann is not None:
                    annotations.append(ann)
                n_ann += 1
                el.clear()  # keep memory flat on large files
            elif el.tag == "Group" and "AnnotationGroups" in depth_tags:
                name = el.get("Name")
                if name and name != NO_GROUP:
                    try:
                        rgb = parse_color(el.get("Color")) if el.get("Color") else None
                    except ValueError as exc:
                        raise AnnotationFormatError(f"{source}: group {name!r}: {exc}") from None
                    groups.setdefault(name, default_class_for(name, rgb))
    except ET.ParseError as exc:
        line, col = exc.position
        raise AnnotationFormatError(f"{source}: not well-formed XML at line {line}, column {col}: {exc}") from exc
    except DefusedXmlException as exc:
        raise AnnotationFormatError(
            f"{source}: refused as unsafe XML ({type(exc).__name__}: DTDs and entities are not allowed)") from exc
    aset = AnnotationSet(tuple(annotations), tuple(groups.values())).with_used_classes()
    return ImportResult(aset, source, "asap-xml", tuple(warnings))


def load_asap_xml(path: str | os.PathLike[str]) -> ImportResult:
    """``parse_asap_xml`` of a file, within the size limit."""
    return parse_asap_xml(read_limited(path, "ASAP XML"), str(path))


# --- tumour polygons for pipelines (phantom truth, patch labels) ---------------------------

GROUP_COLOR = (255, 0, 0)


def write_asap_xml(path: str | os.PathLike[str], annotations: Sequence[PolygonAnnotation]) -> Path:
    """Write polygons as CAMELYON XML: their ``group`` is the ASAP group (atomically)."""
    anns = tuple(Annotation(ShapeKind.POLYGON, p.l0_points, class_name=p.group, name=p.name,
                            properties={ASAP_COLOR_KEY: ANNOTATION_COLOR}) for p in annotations)
    groups = tuple(AnnotationClass(g, GROUP_COLOR, default_class_for(g).is_tumour)
                   for g in dict.fromkeys(p.group for p in annotations)) or (AnnotationClass("_0", GROUP_COLOR, True),)
    return save_asap_xml(path, AnnotationSet(anns, groups))


def read_asap_xml(path: str | os.PathLike[str]) -> list[PolygonAnnotation]:
    """The area annotations of an ASAP XML file as polygons, vertices in ``Order``."""
    out = []
    for ann in load_asap_xml(path).annotation_set.annotations:
        if ann.kind.is_area:
            out.append(PolygonAnnotation(ann.name, ann.outline(), group=ann.class_name or NO_GROUP,
                                         properties={}))
    return out
