"""GeoJSON (QuPath) and ASAP XML (CAMELYON) polygon writers, and round trips through the
simple readers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from histoviewer.core.annotations.asap_xml import read_asap_xml, write_asap_xml
from histoviewer.core.annotations.geojson_io import (
    PolygonAnnotation,
    read_geojson,
    write_atomic,
    write_geojson,
)
from histoviewer.core.errors import AnnotationFormatError


@pytest.fixture
def polygons() -> list[PolygonAnnotation]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(3):
        theta = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        r = 300 + 50 * rng.random(40)
        pts = np.column_stack([r * np.cos(theta), r * np.sin(theta)]) + (50000.25 + i * 1000, 120000.5)
        out.append(
            PolygonAnnotation(
                name=f"lesion-{i}",
                l0_points=tuple(map(tuple, np.round(pts, 2))),
                properties={"size_class": "micro", "diameter_mm": 0.15 + i},
            )
        )
    return out


def test_geojson_is_a_qupath_feature_collection(tmp_path, polygons):
    path = write_geojson(tmp_path / "a.geojson", polygons)
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 3
    feat = doc["features"][0]
    assert feat["type"] == "Feature"
    assert feat["geometry"]["type"] == "Polygon"
    ring = feat["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 41  # closed ring, as GeoJSON requires
    props = feat["properties"]
    assert props["objectType"] == "annotation" and props["name"] == "lesion-0"
    assert props["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert props["size_class"] == "micro" and props["diameter_mm"] == 0.15


def test_geojson_round_trip(tmp_path, polygons):
    back = read_geojson(write_geojson(tmp_path / "a.geojson", polygons))
    assert [a.name for a in back] == [p.name for p in polygons]
    for a, p in zip(back, polygons):
        assert a.l0_points == p.l0_points  # ring reopened, coordinates exact
        assert a.classification == "Tumor" and a.color == (200, 0, 0)
        assert a.properties["diameter_mm"] == p.properties["diameter_mm"]


def test_asap_xml_structure_matches_camelyon(tmp_path, polygons):
    path = write_asap_xml(tmp_path / "a.xml", polygons)
    text = path.read_text()
    assert text.startswith("<?xml")
    root = ET.fromstring(text)
    assert root.tag == "ASAP_Annotations"
    anns = root.find("Annotations").findall("Annotation")
    assert len(anns) == 3
    a0 = anns[0]
    assert a0.attrib == {"Name": "lesion-0", "Type": "Polygon", "PartOfGroup": "_0", "Color": "#F4FA58"}
    coords = a0.find("Coordinates").findall("Coordinate")
    assert [c.get("Order") for c in coords] == [str(i) for i in range(40)]
    assert float(coords[0].get("X")) == polygons[0].l0_points[0][0]
    group = root.find("AnnotationGroups").find("Group")
    assert group.attrib == {"Name": "_0", "PartOfGroup": "None", "Color": "#ff0000"}
    assert group.find("Attributes") is not None


def test_asap_xml_round_trip(tmp_path, polygons):
    back = read_asap_xml(write_asap_xml(tmp_path / "a.xml", polygons))
    assert [a.name for a in back] == [p.name for p in polygons]
    for a, p in zip(back, polygons):
        np.testing.assert_allclose(a.l0_points, p.l0_points, atol=1e-4)
        assert a.group == "_0"


def test_empty_files_are_valid(tmp_path):
    assert read_geojson(write_geojson(tmp_path / "e.geojson", [])) == []
    assert read_asap_xml(write_asap_xml(tmp_path / "e.xml", [])) == []


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_polygon_validation():
    with pytest.raises(ValueError, match="3 distinct"):
        PolygonAnnotation("a", ((0, 0), (1, 1), (0, 0)))
    with pytest.raises(ValueError, match="non-finite"):
        PolygonAnnotation("a", ((0, 0), (1, float("nan")), (0, 1)))
    closed = PolygonAnnotation("a", ((0, 0), (1, 0), (1, 1), (0, 0)))
    assert closed.l0_points == ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0))


def test_readers_reject_malformed_files(tmp_path):
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(AnnotationFormatError, match="bad.geojson"):
        read_geojson(bad)
    bad.write_text(json.dumps({"type": "Topology"}))
    with pytest.raises(AnnotationFormatError, match="FeatureCollection"):
        read_geojson(bad)
    xml = tmp_path / "bad.xml"
    xml.write_text("<Other/>")
    with pytest.raises(AnnotationFormatError, match="ASAP_Annotations"):
        read_asap_xml(xml)
    xml.write_text("<ASAP_Annotations><Annotations><Annotation><Coordinates>"
                   "<Coordinate Order='0' X='a' Y='1'/></Coordinates></Annotation>"
                   "</Annotations></ASAP_Annotations>")
    with pytest.raises(AnnotationFormatError, match="annotation 0"):
        read_asap_xml(xml)
