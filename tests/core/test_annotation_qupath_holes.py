"""Issue 14: QuPath detections are not lesions; holes in ASAP XML follow CAMELYON16's
exclusion group; GeoJSON as current QuPath reads and writes it."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
from skimage.draw import polygon as fill_polygon

from histoviewer.core.annotations import (
    Annotation,
    AnnotationClass,
    AnnotationDocument,
    AnnotationSet,
    ShapeKind,
    load_annotations,
    measure,
    save_annotations,
    slide_label,
)
from histoviewer.core.annotations.asap_xml import asap_xml_bytes, parse_asap_xml
from histoviewer.core.annotations.geojson_io import (
    geojson_bytes,
    parse_geojson,
    read_geojson,
)
from histoviewer.core.annotations.shapes import ObjectKind
from histoviewer.core.errors import AnnotationFormatError

K = ShapeKind
MPP = 0.25


def square(x: float, y: float, side: float) -> tuple[tuple[float, float], ...]:
    return ((x, y), (x + side, y), (x + side, y + side), (x, y + side))


def _cell(i: int, kind_props: dict, feature_extra: dict | None = None) -> dict:
    x = 100 + 30 * i
    return {"type": "Feature", **(feature_extra or {}),
            "geometry": {"type": "Polygon", "coordinates": [[[x, 100], [x + 12, 100], [x + 12, 112], [x, 100]]]},
            "properties": {**kind_props, "classification": {"name": "Tumor", "color": [200, 0, 0]},
                           "measurements": {"Nucleus: Area": 40.5 + i, "Cell: Max caliper": float("nan")}}}


# Every form QuPath has written a detection in: objectType (>= 0.3), object_type (0.2.x
# scripts), the class name in "id" (0.2), cells with a nucleus geometry.
QUPATH_DETECTIONS = [
    _cell(0, {"objectType": "detection"}),
    _cell(1, {"objectType": "cell"}, {"nucleusGeometry": {"type": "Polygon",
                                                          "coordinates": [[[133, 103], [136, 103], [136, 106], [133, 103]]]}}),
    _cell(2, {"object_type": "detection"}),
    _cell(3, {}, {"id": "PathCellObject"}),
    _cell(4, {}, {"id": "PathDetectionObject"}),
    _cell(5, {"objectType": "tile"}),
]


def test_tumor_classified_qupath_cells_never_change_the_label():
    """The reported case: a QuPath export of Tumor cells made a negative slide ITC."""
    result = parse_geojson(json.dumps(QUPATH_DETECTIONS).encode(), "cells.geojson")
    anns = result.annotation_set.annotations
    assert [a.object_kind for a in anns] == [ObjectKind.DETECTION, ObjectKind.CELL, ObjectKind.DETECTION,
                                             ObjectKind.CELL, ObjectKind.DETECTION, ObjectKind.TILE]
    assert all(a.class_name == "Tumor" and not a.is_region for a in anns)
    assert any("6 detections" in w and "never sized or staged" in w for w in result.warnings)
    doc = AnnotationDocument(mpp=MPP)
    doc.import_set(result.annotation_set)
    label = slide_label(doc)
    assert label.label == "negative" and label.lesions == ()
    assert all(doc.measure(a.uid).size_class is None for a in anns)
    assert measure(anns[0], MPP, is_tumour=True).size_class is None  # even when asked
    tumour = next(s for s in doc.class_summaries() if s.class_name == "Tumor")
    assert (tumour.count, tumour.detections, tumour.area_px2) == (0, 6, 0.0)
    # A real tumour annotation beside them still stages the slide, by itself alone.
    doc.add(Annotation(K.POLYGON, square(0, 0, 400), class_name="Tumor", name="drawn"))  # 0.1 mm
    label = slide_label(doc)
    assert label.label == "itc" and [les.name for les in label.lesions] == ["drawn"]


def test_detections_round_trip_through_geojson_and_stay_out_of_asap_xml(tmp_path):
    aset = parse_geojson(json.dumps(QUPATH_DETECTIONS).encode(), "cells.geojson").annotation_set
    aset = AnnotationSet(aset.annotations + (Annotation(K.POLYGON, square(0, 0, 50), class_name="Tumor",
                                                        name="lesion"),), aset.classes)
    out = tmp_path / "out.geojson"
    save_annotations(out, aset)
    doc = json.loads(out.read_text())
    types = [f["properties"]["objectType"] for f in doc["features"]]
    assert types == ["detection", "cell", "detection", "cell", "detection", "tile", "annotation"]
    assert doc["features"][1]["nucleusGeometry"]["type"] == "Polygon"  # where QuPath reads it
    assert doc["features"][0]["properties"]["measurements"] == {"Nucleus: Area": 40.5, "Cell: Max caliper": "NaN"}
    back = load_annotations(out).annotation_set
    assert [a.object_kind for a in back.annotations] == [a.object_kind for a in aset.annotations]
    assert [dict(a.properties) for a in back.annotations] == [dict(a.properties) for a in aset.annotations]
    # ASAP XML: CAMELYON mask tools would paint a "Tumor" cell as tumour; they are left out, said so.
    losses = save_annotations(tmp_path / "out.xml", aset)
    assert losses == ["6 detections not written (ASAP XML has no detections; use GeoJSON to keep them)"]
    xml_back = load_annotations(tmp_path / "out.xml").annotation_set.annotations
    assert [a.name for a in xml_back] == ["lesion"]
    # the polygon pipelines (ground truth, patch labels) see annotations only
    assert [p.name for p in read_geojson(out)] == ["lesion"]


# --- holes --------------------------------------------------------------------------------

def _camelyon_mask(xml: bytes, shape: tuple[int, int]) -> np.ndarray:
    """What CAMELYON16's mask tool makes of an ASAP file: groups _0 and _1 painted 1, then
    _2 painted 0 (ASAP AnnotationToMask, label map {_0: 1, _1: 1, _2: 0}, in that order)."""
    mask = np.zeros(shape, np.uint8)
    blocks = re.findall(r'<Annotation [^>]*PartOfGroup="([^"]*)"[^>]*>(.*?)</Annotation>', xml.decode(), re.DOTALL)
    for group, value in (("_0", 1), ("_1", 1), ("_2", 0)):
        for g, body in blocks:
            if g == group:
                pts = np.array([(float(x), float(y)) for x, y in re.findall(r'X="([^"]+)" Y="([^"]+)"', body)])
                rr, cc = fill_polygon(pts[:, 1], pts[:, 0], shape)
                mask[rr, cc] = value
    return mask


def test_holes_of_tumour_polygons_go_to_the_exclusion_group_and_come_back_as_holes(tmp_path):
    hole = square(40, 40, 20)
    aset = AnnotationSet((
        Annotation(K.POLYGON, square(10, 10, 80), class_name="_0", name="metastasis", l0_holes=(hole,)),
        Annotation(K.POLYGON, square(110, 10, 80), class_name="Normal", name="lymphoid", l0_holes=(square(140, 40, 20),)),
    ), (AnnotationClass("_0", (255, 0, 0), True), AnnotationClass("Normal", (0, 160, 0))))
    xml = asap_xml_bytes(aset)
    groups = re.findall(r'<Annotation Name="([^"]*)" Type="\w+" PartOfGroup="([^"]*)"', xml.decode())
    assert groups == [("metastasis", "_0"), ("metastasis (hole 1)", "_2"),
                      ("lymphoid", "Normal"), ("lymphoid (hole 1)", "Normal")]  # never _2: it would erase tumour
    assert '<Group Name="_2"' in xml.decode()
    mask = _camelyon_mask(xml, (100, 200))
    assert mask[50, 50] == 0 and mask[20, 20] == 1  # the hole is not tumour for the challenge's tools
    back = parse_asap_xml(xml, "holes.xml").annotation_set
    assert [(a.name, a.class_name, a.l0_holes) for a in back.annotations] == \
        [(a.name, a.class_name, a.l0_holes) for a in aset.annotations]
    assert back.class_named("_2") is None  # only holes were in it
    assert asap_xml_bytes(back) == xml  # and the text is stable


def test_exclusion_polygons_become_holes_only_when_inside_a_tumour_polygon():
    xml = b"""<ASAP_Annotations><Annotations>
<Annotation Name="t" Type="Polygon" PartOfGroup="_1"><Coordinates><Coordinate Order="0" X="0" Y="0"/>
<Coordinate Order="1" X="100" Y="0"/><Coordinate Order="2" X="100" Y="100"/><Coordinate Order="3" X="0" Y="100"/></Coordinates></Annotation>
<Annotation Name="inner" Type="Polygon" PartOfGroup="_0"><Coordinates><Coordinate Order="0" X="20" Y="20"/>
<Coordinate Order="1" X="80" Y="20"/><Coordinate Order="2" X="80" Y="80"/><Coordinate Order="3" X="20" Y="80"/></Coordinates></Annotation>
<Annotation Name="in both" Type="Polygon" PartOfGroup="_2"><Coordinates><Coordinate Order="0" X="40" Y="40"/>
<Coordinate Order="1" X="60" Y="40"/><Coordinate Order="2" X="60" Y="60"/></Coordinates></Annotation>
<Annotation Name="crossing" Type="Polygon" PartOfGroup="_2"><Coordinates><Coordinate Order="0" X="90" Y="90"/>
<Coordinate Order="1" X="120" Y="90"/><Coordinate Order="2" X="120" Y="120"/></Coordinates></Annotation>
<Annotation Name="in normal" Type="Polygon" PartOfGroup="_2"><Coordinates><Coordinate Order="0" X="510" Y="510"/>
<Coordinate Order="1" X="520" Y="510"/><Coordinate Order="2" X="520" Y="520"/></Coordinates></Annotation>
<Annotation Name="normal" Type="Polygon" PartOfGroup="Normal"><Coordinates><Coordinate Order="0" X="500" Y="500"/>
<Coordinate Order="1" X="600" Y="500"/><Coordinate Order="2" X="600" Y="600"/><Coordinate Order="3" X="500" Y="600"/></Coordinates></Annotation>
</Annotations></ASAP_Annotations>"""
    anns = parse_asap_xml(xml, "mixed.xml").annotation_set.annotations
    assert [a.name for a in anns] == ["t", "inner", "crossing", "in normal", "normal"]
    assert anns[0].l0_holes == () and anns[1].l0_holes == (((40, 40), (60, 40), (60, 60)),)  # innermost
    assert anns[2].class_name == "_2" and anns[3].class_name == "_2"  # not inside a tumour polygon


def test_real_camelyon16_exclusions_become_holes_and_areas_drop(shared_data):
    src = shared_data / "annotations" / "camelyon16-train" / "Tumor_016.json"
    if not src.is_file():
        pytest.skip(f"{src} missing")
    raw = json.loads(src.read_text())
    anns = load_annotations(src).annotation_set.annotations
    n_holes = sum(len(a.l0_holes) for a in anns)
    left = [a for a in anns if a.class_name == "_2"]
    assert n_holes > 0 and n_holes + len(left) == len(raw["negative"])
    holed = next(a for a in anns if a.l0_holes)
    plain = holed.with_changes(l0_holes=())
    assert measure(holed, 0.243).area_px2 < measure(plain, 0.243).area_px2
    assert measure(holed, 0.243).max_diameter_px == measure(plain, 0.243).max_diameter_px


# --- GeoJSON as QuPath reads and writes it ------------------------------------------------

def test_lesion_values_go_in_qupath_measurements_and_ellipses_keep_is_ellipse():
    aset = AnnotationSet((
        Annotation(K.POLYGON, square(0, 0, 100), class_name="Tumor", name="lesion-1",
                   properties={"max_diameter_mm": 0.61, "area_mm2": 0.2, "probability": 0.93,
                               "size_class": "micro", "provisional": False, "missing": float("nan")}),
        Annotation(K.ELLIPSE, ((0, 0), (40, 20)), class_name="Tumor", name="ell"),
    ))
    doc = json.loads(geojson_bytes(aset))
    props = doc["features"][0]["properties"]
    assert props["measurements"] == {"max_diameter_mm": 0.61, "area_mm2": 0.2, "probability": 0.93}
    assert props["metadata"] == {"size_class": "micro"}
    assert props["missing"] is None  # strict JSON: NaN is not a number there
    assert doc["features"][1]["geometry"]["isEllipse"] is True  # where QuPath's ROI reader looks
    # A QuPath ellipse (no member of ours): read back as an ellipse from its bounding box.
    qupath_only = {"type": "Feature", "geometry": doc["features"][1]["geometry"],
                   "properties": {"objectType": "annotation"}}
    ann, = parse_geojson(json.dumps(qupath_only).encode(), "q.geojson").annotation_set.annotations
    assert ann.kind is K.ELLIPSE and ann.box() == (0, 0, 40, 20)


@pytest.mark.parametrize("text", [
    # a bare geometry, a bare Feature, a FeatureCollection, a list (QuPath 0.2)
    '{"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]}',
    ('{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]},'
     ' "properties": {"classification": "Tumor"}}'),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Polygon", '
     '"coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]}, "properties": {"classification": "Tumor: Positive",'
     ' "measurements": [{"name": "Area", "value": 50}]}}]}'),
    ('[{"type": "Feature", "id": "PathAnnotationObject", "geometry": {"type": "Polygon", '
     '"coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]}, "properties": {"classification": {}}}]'),
])
def test_every_geojson_shape_qupath_accepts_is_read(tmp_path, text):
    for name, data in (("a.geojson", text.encode()), ("a.geojson.gz", gzip.compress(text.encode()))):
        (tmp_path / name).write_bytes(data)
        ann, = load_annotations(tmp_path / name).annotation_set.annotations
        assert ann.kind is K.POLYGON and ann.l0_points == ((0, 0), (10, 0), (10, 10)) and ann.is_region
        assert ann.class_name in (None, "Tumor", "Tumor: Positive")
        assert ann.uid != "PathAnnotationObject"


def test_gzip_bomb_and_truncated_gzip_are_refused(tmp_path, monkeypatch):
    from histoviewer.core.annotations import limits

    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 1 << 20)
    bomb = tmp_path / "bomb.geojson.gz"
    bomb.write_bytes(gzip.compress(b" " * (8 << 20)))  # 8 KiB that expand to 8 MiB
    with pytest.raises(AnnotationFormatError, match="bomb.geojson.gz: decompresses to more than 1 MiB"):
        load_annotations(bomb)
    cut = tmp_path / "cut.geojson.gz"
    cut.write_bytes(gzip.compress(json.dumps(QUPATH_DETECTIONS).encode())[:-30])
    with pytest.raises(AnnotationFormatError, match="cut.geojson.gz: gzip data ends early"):
        load_annotations(cut)
    with pytest.raises(AnnotationFormatError, match="is read, not written|unknown annotation format"):
        save_annotations(tmp_path / "out.geojson.gz", AnnotationSet())


# --- the regions API the metrics build on ---------------------------------------------------

def test_read_regions_gives_one_rule_for_every_format(tmp_path):
    from histoviewer.core.annotations.regions import read_regions

    aset = AnnotationSet((
        Annotation(K.POLYGON, square(0, 0, 100), class_name="_0", name="t", l0_holes=(square(40, 40, 10),)),
        Annotation(K.POLYGON, square(500, 500, 30), class_name="_2", name="lone exclusion"),
        Annotation(K.RECTANGLE, ((200, 200), (260, 240)), class_name="Normal", name="n"),
        Annotation(K.POINTS, ((1, 1), (2, 2)), class_name="_0", name="dots"),
    ), (AnnotationClass("_0", (255, 0, 0), True), AnnotationClass("_2", (0, 160, 0)),
        AnnotationClass("Normal", (0, 160, 0))))
    seen = []
    for name in ("t.xml", "t.geojson"):
        save_annotations(tmp_path / name, aset)
        got = read_regions(tmp_path / name)
        assert got.without_area == 1
        seen.append([(r.name, r.class_name, r.is_tumour, r.is_exclusion, r.is_region, r.exterior.shape,
                      [h.tolist() for h in r.holes]) for r in got.regions])
    assert seen[0] == seen[1] == [
        ("t", "_0", True, False, True, (4, 2), [[list(p) for p in square(40, 40, 10)]]),
        ("lone exclusion", "_2", False, True, True, (4, 2), []),
        ("n", "Normal", False, False, True, (4, 2), []),
    ]
    cells = tmp_path / "cells.geojson"
    cells.write_text(json.dumps(QUPATH_DETECTIONS))
    got = read_regions(cells)
    assert all(r.is_tumour and not r.is_region for r in got.regions)  # the caller sees what they are


def test_patch_labels_keep_the_exclusions_that_became_holes(shared_data):
    from histoviewer.core.patches.slide_patches import read_tumour_polygons

    src = shared_data / "annotations" / "camelyon16-train" / "Tumor_016.json"
    if not src.is_file():
        pytest.skip(f"{src} missing")
    raw = json.loads(src.read_text())
    _pos, neg = read_tumour_polygons(src)
    assert len(neg) == len(raw["negative"])  # inside a tumour polygon (holes) or not
    assert sorted(map(len, neg)) == sorted(len(n["vertices"]) - (n["vertices"][0] == n["vertices"][-1])
                                           for n in raw["negative"])


def test_an_exclusion_polygon_with_its_own_hole_round_trips():
    aset = AnnotationSet((
        Annotation(K.POLYGON, square(0, 0, 100), class_name="_0", name="t", l0_holes=(square(10, 10, 10),)),
        Annotation(K.POLYGON, square(300, 0, 100), class_name="_2", name="x", l0_holes=(square(320, 20, 10),)),
    ), (AnnotationClass("_0", (255, 0, 0), True), AnnotationClass("_2", (0, 160, 0))))
    back = parse_asap_xml(asap_xml_bytes(aset), "x.xml").annotation_set.annotations
    assert [(a.name, a.class_name, a.l0_holes) for a in back] == \
        [(a.name, a.class_name, a.l0_holes) for a in aset.annotations]
