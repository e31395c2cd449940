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
ellipse, freehand, holes or detections: ellipses and freehand shapes are written as
polygons; holes of tumour polygons as polygons of the exclusion group ``_2`` and holes of
other polygons as polygons of their own group (``holes``: both are read back as holes);
detections (QuPath cells) are not written, so that mask tools never paint them as tumour.
``asap_losses`` lists what a file would lose. ASAP reserves the group name "None" for
unclassified, so a class named "None" is written as ``None (class)``; characters XML
cannot hold (control characters) are replaced by U+FFFD. A file larger than our reader
accepts is refused before anything is written.
Numbers are written in Python's shortest round-trip form, so every vertex read from a
file is written back with the same value.

Reading is for untrusted files: ``defusedxml`` with DTDs forbidden (no entity expansion,
no external entities), SAX so that the annotation and vertex limits stop a huge file
early, and the whole buffer handed to expat at once (fed in 64 KiB pieces, expat 2.5
rescans a long attribute from its start at every piece: a 200 MiB attribute took
quadratic time) after a linear check that no tag is longer than a few MiB (even in one
buffer Python hands expat 1 MiB at a time: ``safe_read.check_xml_spans``); errors name the
file and the parser's line and column or the annotation at fault.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax import SAXParseException
from xml.sax.expatreader import ExpatLocator
from xml.sax.handler import ContentHandler
from xml.sax.saxutils import quoteattr

from defusedxml import DefusedXmlException
from defusedxml.expatreader import DefusedExpatParser

from histoviewer.core.annotations.classes import (
    DEFAULT_CLASSES,
    AnnotationClass,
    default_class_for,
    parse_color,
    rgb_to_hex,
)
from histoviewer.core.annotations.geojson_io import PolygonAnnotation, write_atomic
from histoviewer.core.annotations import limits
from histoviewer.core.annotations.holes import EXCLUSION_GROUP, attach_holes, hole_name
from histoviewer.core.annotations.model import AnnotationSet, ImportResult
from histoviewer.core.annotations.safe_read import VertexBudget, check_output_size, check_xml_spans, read_limited
from histoviewer.core.annotations.sanitize import Replacements
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
NONE_CLASS_GROUP = "None (class)"  # a class literally named "None" (ASAP's "no group")
EXCLUSION_RGB = (0, 160, 0)


def _fmt(v: float) -> str:
    # Shortest text that reads back as the same float ("71924", "67890.1234").
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _asap_type(ann: Annotation) -> tuple[str, tuple[tuple[float, float], ...]]:
    kept = ann.properties.get(ASAP_TYPE_KEY)
    if ann.kind.is_ring:
        pts = ann.l0_points + ann.l0_points[:1] if ann.properties.get(ASAP_CLOSED_KEY) else ann.l0_points
        return (kept if kept in ("Spline", "Rectangle") else "Polygon"), pts
    if ann.kind is ShapeKind.RECTANGLE:
        return "Rectangle", ann.outline()
    if ann.kind is ShapeKind.ELLIPSE:
        return "Polygon", ann.outline()
    if kept in ("Polygon", "Spline"):  # a degenerate polygon of a file (1 or 2 vertices) goes back as it came
        return kept, ann.l0_points
    if ann.kind is ShapeKind.LINE:
        return "Measurement", ann.l0_points
    if len(ann.l0_points) == 1 and kept != "PointSet":
        return "Dot", ann.l0_points
    return "PointSet", ann.l0_points


def _class_is_tumour(aset: AnnotationSet, name: str | None) -> bool:
    if name is None:
        return False
    cls = aset.class_named(name)
    return (cls if cls is not None else default_class_for(name)).is_tumour


def asap_losses(aset: AnnotationSet) -> list[str]:
    """What writing ``aset`` as ASAP XML would not keep (ASAP has no such thing)."""
    counts: dict[str, int] = {}

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    for ann in aset.annotations:
        if not ann.is_region:
            count("detections not written (ASAP XML has no detections; use GeoJSON to keep them)")
            continue
        if ann.kind in (ShapeKind.ELLIPSE, ShapeKind.FREEHAND):
            count(f"{ann.kind.value} shapes written as polygons")
        if ann.note:
            count("notes dropped")
        if ann.class_name == NO_GROUP:
            count(f'annotations of the class "None" written in group "{NONE_CLASS_GROUP}" '
                  '(ASAP reserves "None" for unclassified)')
    return [f"{n} {what}" for what, n in counts.items()]


def _group(class_name: str | None) -> str:
    if class_name is None:
        return NO_GROUP
    return NONE_CLASS_GROUP if class_name == NO_GROUP else class_name


def _coordinate_lines(pts) -> list[str]:
    return [f'\t\t\t\t<Coordinate Order="{order}" X="{_fmt(x)}" Y="{_fmt(y)}" />\n' for order, (x, y) in enumerate(pts)]


def _estimated_bytes(aset: AnnotationSet, sample: int = 32) -> int:
    """A slight underestimate of the XML size from the first few vertices of each shape."""
    total = 0
    for ann in aset.annotations:
        if ann.is_region and ann.n_vertices > sample:
            lines = _coordinate_lines(ann.l0_points[:sample])
            total += int(0.9 * sum(map(len, lines)) / len(lines) * ann.n_vertices)
    return total


def asap_xml_bytes(aset: AnnotationSet, replacements: Replacements | None = None,
                   target: str = "ASAP XML") -> bytes:
    """The ASAP XML document for ``aset`` (UTF-8, with XML declaration, tab-indented as
    ASAP writes it). Text is assembled directly: ElementTree's serialiser is pure Python
    and took most of the time on CAMELYON-sized files. ``AnnotationFormatError`` (before
    anything is written) when our own reader would refuse the file."""
    rep = replacements if replacements is not None else Replacements()
    budget = VertexBudget(target, writing=True)
    classes = {c.name: c for c in aset.classes}
    out = ["<?xml version='1.0' encoding='utf-8'?>\n<ASAP_Annotations>\n"]
    check_output_size(target, _estimated_bytes(aset))  # early: building a too-large text takes long
    used: dict[str, None] = {}
    body: list[str] = []
    built = mark = 0
    for ann in aset.annotations:
        if not ann.is_region:
            continue  # see asap_losses: mask tools would paint a "Tumor" cell as tumour
        group = _group(ann.class_name)
        if ann.class_name is not None:
            used.setdefault(ann.class_name, None)
        cls = classes.get(ann.class_name or "") or (default_class_for(ann.class_name) if ann.class_name else None)
        color = ann.properties.get(ASAP_COLOR_KEY)
        if not (isinstance(color, str) and 0 < len(color) <= 32):  # a colour, not any text a file had
            color = rgb_to_hex(cls.rgb) if cls else ANNOTATION_COLOR
        asap_type, pts = _asap_type(ann)
        rings = [(ann.name, asap_type, group, pts)]
        if ann.l0_holes:
            hole_group = EXCLUSION_GROUP if _class_is_tumour(aset, ann.class_name) else group
            if hole_group == EXCLUSION_GROUP:
                used.setdefault(EXCLUSION_GROUP, None)
            rings += [(hole_name(ann.name, k + 1), "Polygon", hole_group, h) for k, h in enumerate(ann.l0_holes)]
        for name, typ, grp, ring in rings:
            budget.annotation(f"annotation {budget.annotations} ({name!r})", len(ring))
            ring_color = color if grp == group else rgb_to_hex(EXCLUSION_RGB)
            body.append(f"\t\t<Annotation Name={quoteattr(rep.xml(name, 'names'))} Type={quoteattr(typ)} "
                        f"PartOfGroup={quoteattr(rep.xml(grp, 'class names'))} "
                        f"Color={quoteattr(rep.xml(str(ring_color), 'colours'))}>\n\t\t\t<Coordinates>\n")
            body.extend(_coordinate_lines(ring))
            body.append("\t\t\t</Coordinates>\n\t\t</Annotation>\n")
            # Stop as soon as the text is over the limit, not after building all of it
            # (characters: at least the bytes; the exact check follows the encoding).
            built += sum(len(t) for t in body[mark:])
            mark = len(body)
            if built > limits.MAX_FILE_BYTES:
                check_output_size(target, built)
    out.append("\t<Annotations>\n" + "".join(body) + "\t</Annotations>\n" if body else "\t<Annotations />\n")
    default_names = {c.name for c in DEFAULT_CLASSES}
    groups = [c for c in aset.classes if c.name in used or c.name not in default_names]
    groups += [default_class_for(n, EXCLUSION_RGB if n == EXCLUSION_GROUP else None)
               for n in used if n not in classes]
    if groups:
        out.append("\t<AnnotationGroups>\n")
        out.extend(f'\t\t<Group Name={quoteattr(rep.xml(_group(c.name), "class names"))} PartOfGroup="{NO_GROUP}" '
                   f'Color="{rgb_to_hex(c.rgb)}">\n\t\t\t<Attributes />\n\t\t</Group>\n' for c in groups)
        out.append("\t</AnnotationGroups>\n")
    else:
        out.append("\t<AnnotationGroups />\n")
    out.append("</ASAP_Annotations>\n")
    data = "".join(out).encode("utf-8")
    check_output_size(target, len(data))
    return data


def save_asap_xml(path: str | os.PathLike[str], aset: AnnotationSet) -> list[str]:
    """Write ``aset`` as an ASAP/CAMELYON XML file (atomically); returns what had to be
    replaced to be written (characters XML cannot hold), empty when nothing."""
    rep = Replacements()
    write_atomic(path, asap_xml_bytes(aset, rep, target=str(path)))
    return rep.messages()


# --- reading -------------------------------------------------------------------------------

def _annotation(i: int, el: dict[str, str], coords: list[tuple[int, float, float]], warnings: list[str],
                group_hex: str | None) -> Annotation | None:
    name = el.get("Name", "")
    typ = el.get("Type", "Polygon")
    group = el.get("PartOfGroup", NO_GROUP)
    props: dict[str, Any] = {}
    if el.get("Color") and el.get("Color") != group_hex:  # the group's colour is the class colour
        props[ASAP_COLOR_KEY] = el.get("Color")
    orders = [o for o, _, _ in coords]
    if orders != sorted(orders):
        coords = sorted(coords, key=lambda c: c[0])  # stable: equal orders keep file order
    pts = tuple((x, y) for _, x, y in coords)
    class_name = None if group == NO_GROUP else group
    if typ in ("Polygon", "Spline"):
        return ring_annotation(pts, class_name, name, props, typ, f"annotation {i}", warnings)
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
    return Annotation(kind, pts, class_name=class_name, name=name, properties=props)


def ring_annotation(pts: tuple[tuple[float, float], ...], class_name: str | None, name: str, props: dict[str, Any],
                    asap_type: str, where: str, warnings: list[str]) -> Annotation | None:
    """A Polygon/Spline of a file as an annotation, keeping what ASAP XML needs to write it
    back vertex for vertex: a repeated first vertex, and degenerate polygons (one or two
    vertices, found in real CAMELYON16 files) as a point or line marked as an ASAP Polygon."""
    props = dict(props)
    if asap_type == "Spline":
        props[ASAP_TYPE_KEY] = "Spline"
    if len(pts) > 3 and pts[0] == pts[-1]:
        props[ASAP_CLOSED_KEY] = True
    distinct = len(set(pts))
    if distinct >= 3:
        return Annotation(ShapeKind.POLYGON, pts, class_name=class_name, name=name, properties=props)
    if not pts:
        warnings.append(f"{where} ({name!r}): {asap_type} without coordinates; skipped")
        return None
    props[ASAP_TYPE_KEY] = asap_type if asap_type == "Spline" else "Polygon"
    kind = ShapeKind.LINE if len(pts) >= 2 else ShapeKind.POINTS
    warnings.append(f"{where} ({name!r}): {asap_type} of {len(pts)} vertices has no area; read as a {kind.value}")
    return Annotation(kind, pts, class_name=class_name, name=name, properties=props)


class _AsapHandler(ContentHandler):
    """SAX handler collecting annotations (as raw attributes and coordinates) and groups,
    counting against the limits as it goes so that a huge file stops early."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source
        self.budget = VertexBudget(source)
        self.locator: Any = None
        self.stack: list[str] = []
        self.pending: list[tuple[dict[str, str], list[tuple[int, float, float]], int]] = []
        self.groups: dict[str, AnnotationClass] = {}
        self._attrib: dict[str, str] | None = None
        self._coords: list[tuple[int, float, float]] = []
        self._line = 0
        self._groups_open = 0  # AnnotationGroups elements open (a counter: scanning the stack
        # at every Group made deeply nested hostile files quadratic)

    def setDocumentLocator(self, locator: Any) -> None:  # noqa: N802 - SAX API
        self.locator = locator

    def where(self) -> str:
        if self.locator is None:
            return ""
        return f"line {self.locator.getLineNumber()}, column {self.locator.getColumnNumber() + 1}: "

    def fail(self, message: str) -> AnnotationFormatError:
        return AnnotationFormatError(f"{self.source}: {self.where()}{message}")

    def startElement(self, name: str, attrs: Any) -> None:  # noqa: N802 - SAX API
        if not self.stack and name != "ASAP_Annotations":
            raise self.fail(f"root element is {name!r}, not ASAP_Annotations")
        self.stack.append(name)
        if name == "AnnotationGroups":
            self._groups_open += 1
        if name == "Coordinate" and self._attrib is not None:
            coords = self._coords
            try:
                order = int(attrs.get("Order", len(coords)))
                x, y = float(attrs["X"]), float(attrs["Y"])
            except KeyError as exc:
                raise self.fail(f"annotation {len(self.pending)} coordinate {len(coords)}: "
                                f"missing attribute {exc}") from None
            except ValueError as exc:
                raise self.fail(f"annotation {len(self.pending)} coordinate {len(coords)}: {exc}") from None
            coords.append((order, x, y))
            if (len(coords) > limits.MAX_VERTICES_PER_ANNOTATION
                    or self.budget.vertices + len(coords) > limits.MAX_TOTAL_VERTICES):
                self.budget.annotation(f"{self.where()}annotation {len(self.pending)}", len(coords))  # raises
        elif name == "Annotation":
            self._attrib, self._coords = dict(attrs.items()), []
            self._line = self.locator.getLineNumber() if self.locator is not None else 0
        elif name == "Group" and self._groups_open:
            gname = attrs.get("Name")
            if gname and gname != NO_GROUP:
                try:
                    rgb = parse_color(attrs["Color"]) if attrs.get("Color") else None
                except ValueError as exc:
                    raise self.fail(f"group {gname!r}: {exc}") from None
                self.groups.setdefault(gname, default_class_for(gname, rgb))

    def endElement(self, name: str) -> None:  # noqa: N802 - SAX API
        self.stack.pop()
        if name == "AnnotationGroups":
            self._groups_open -= 1
        if name == "Annotation" and self._attrib is not None:
            self.budget.annotation(f"annotation {len(self.pending)} ({self._attrib.get('Name', '')!r})",
                                   len(self._coords))
            self.pending.append((self._attrib, self._coords, self._line))
            self._attrib, self._coords = None, []


def parse_asap_xml(data: bytes, source: str = "<ASAP XML>") -> ImportResult:
    """Annotations from ASAP XML bytes; ``AnnotationFormatError`` naming ``source`` and the
    line and column (syntax, DTDs, entities, bad values) or the annotation at fault."""
    check_xml_spans(data, source)  # before expat: a huge single token costs it quadratic time
    handler = _AsapHandler(source)
    parser = DefusedExpatParser(forbid_dtd=True, forbid_entities=True, forbid_external=True)
    parser.setContentHandler(handler)
    handler.setDocumentLocator(ExpatLocator(parser))  # parse() would; feed() does not
    try:
        parser.feed(data)  # one buffer: linear time (see module doc)
        parser.close()
    except SAXParseException as exc:
        raise AnnotationFormatError(f"{source}: not well-formed XML at line {exc.getLineNumber()}, "
                                    f"column {exc.getColumnNumber() + 1}: {exc.getMessage()}") from exc
    except DefusedXmlException as exc:
        raise AnnotationFormatError(
            f"{source}: {handler.where()}refused as unsafe XML ({type(exc).__name__}: DTDs and entities "
            "are not allowed)") from exc
    # Annotations are built once the groups (at the end of the file) are known, so that an
    # annotation colour equal to its group's is not kept as an override.
    group_hex = {name: rgb_to_hex(cls.rgb) for name, cls in handler.groups.items()}
    annotations: list[Annotation] = []
    warnings: list[str] = []
    for i, (attrib, pts, line) in enumerate(handler.pending):
        try:
            ann = _annotation(i, attrib, pts, warnings, group_hex.get(attrib.get("PartOfGroup", NO_GROUP)))
        except ValueError as exc:
            raise AnnotationFormatError(
                f"{source}: line {line}: annotation {i} ({attrib.get('Name', '')!r}): {exc}") from None
        if ann is not None:
            annotations.append(ann)
    groups = dict(handler.groups)
    annotations = attach_holes(annotations, lambda name: name is not None and (
        groups[name] if name in groups else default_class_for(name)).is_tumour, warnings)
    if EXCLUSION_GROUP in groups and not any(a.class_name == EXCLUSION_GROUP for a in annotations):
        del groups[EXCLUSION_GROUP]  # only holes were in it: they are holes now
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
    save_asap_xml(path, AnnotationSet(anns, groups))
    return Path(path)


def read_asap_xml(path: str | os.PathLike[str]) -> list[PolygonAnnotation]:
    """The area annotations of an ASAP XML file as polygons, vertices in ``Order``; holes
    as polygons of the exclusion group ``_2`` (as the file has them)."""
    out = []
    for ann in load_asap_xml(path).annotation_set.annotations:
        if ann.kind.is_area:
            out.append(PolygonAnnotation(ann.name, ann.outline(), group=ann.class_name or NO_GROUP,
                                         properties={}))
            out += [PolygonAnnotation(hole_name(ann.name, k + 1), h, group=EXCLUSION_GROUP, properties={})
                    for k, h in enumerate(ann.l0_holes)]
    return out
