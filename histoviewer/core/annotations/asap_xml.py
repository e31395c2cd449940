"""Polygon annotations as ASAP XML, the format of the CAMELYON16/17 ground truth.

::

    <ASAP_Annotations>
      <Annotations>
        <Annotation Name="_0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
          <Coordinates>
            <Coordinate Order="0" X="12345.5" Y="67890.25"/>
            ...
      <AnnotationGroups>
        <Group Name="_0" PartOfGroup="None" Color="#ff0000"><Attributes/></Group>

Coordinates are level-0 pixels. CAMELYON16 puts tumour in groups ``_0`` and ``_1`` and
non-tumour islands to exclude in ``_2``. The reader only parses what this writer produces
(it uses ``xml.etree``, which is not safe for untrusted files).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from histoviewer.core.annotations.geojson_io import PolygonAnnotation, write_atomic
from histoviewer.core.errors import AnnotationFormatError

__all__ = ["asap_xml_bytes", "read_asap_xml", "write_asap_xml"]

ANNOTATION_COLOR = "#F4FA58"  # the yellow CAMELYON16 annotations use
GROUP_COLOR = "#ff0000"


def _fmt(v: float) -> str:
    # Plain decimal, enough digits to round-trip level-0 pixel positions to 1e-4 px.
    text = f"{v:.4f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def asap_xml_bytes(annotations: Sequence[PolygonAnnotation]) -> bytes:
    """The ASAP XML document for ``annotations`` (UTF-8, with XML declaration)."""
    root = ET.Element("ASAP_Annotations")
    anns = ET.SubElement(root, "Annotations")
    groups: dict[str, None] = {}
    for ann in annotations:
        groups.setdefault(ann.group, None)
        el = ET.SubElement(
            anns, "Annotation",
            {"Name": ann.name, "Type": "Polygon", "PartOfGroup": ann.group,
             "Color": ANNOTATION_COLOR},
        )
        coords = ET.SubElement(el, "Coordinates")
        for order, (x, y) in enumerate(ann.l0_points):
            ET.SubElement(coords, "Coordinate", {"Order": str(order), "X": _fmt(x), "Y": _fmt(y)})
    grp_root = ET.SubElement(root, "AnnotationGroups")
    for name in groups or {"_0": None}:
        grp = ET.SubElement(grp_root, "Group", {"Name": name, "PartOfGroup": "None",
                                                "Color": GROUP_COLOR})
        ET.SubElement(grp, "Attributes")
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write_asap_xml(path: str | os.PathLike[str], annotations: Sequence[PolygonAnnotation]) -> Path:
    """Write ``annotations`` as an ASAP/CAMELYON XML file (atomically)."""
    return write_atomic(path, asap_xml_bytes(annotations))


def read_asap_xml(path: str | os.PathLike[str]) -> list[PolygonAnnotation]:
    """Polygons from an ASAP XML file written by ``write_asap_xml``, vertices in ``Order``.

    Raises ``AnnotationFormatError`` naming the file when it is not ASAP XML.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise AnnotationFormatError(f"{path}: cannot read ASAP XML: {exc}") from exc
    if root.tag != "ASAP_Annotations":
        raise AnnotationFormatError(f"{path}: root element is {root.tag!r}, not ASAP_Annotations")
    out: list[PolygonAnnotation] = []
    for i, el in enumerate(root.iter("Annotation")):
        if el.get("Type", "Polygon") not in ("Polygon", "Spline"):
            continue
        try:
            pts = sorted(
                (int(c.get("Order", j)), float(c.attrib["X"]), float(c.attrib["Y"]))
                for j, c in enumerate(el.iter("Coordinate"))
            )
            out.append(
                PolygonAnnotation(
                    name=el.get("Name", f"_{i}"),
                    l0_points=tuple((x, y) for _, x, y in pts),
                    group=el.get("PartOfGroup", "_0"),
                )
            )
        except (KeyError, ValueError) as exc:
            raise AnnotationFormatError(f"{path}: annotation {i} is not a valid polygon: {exc}") from exc
    return out
