"""The official CAMELYON16 FROC (``froc_official``) against an independent, straightforward
reimplementation of the challenge's rules on real CAMELYON16 lesion polygons, and its quirks
by construction (lowest threshold dropped, probability 0 never counts, float32 scores,
interpolation). Also: one truth rule for XML and GeoJSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure

from histoviewer.core.analysis.froc import Detection, evaluate_slide, froc
from histoviewer.core.analysis.froc_official import (
    evaluate_slide_official,
    froc_official,
)
from histoviewer.core.analysis.truth import Truth, read_truth
from histoviewer.core.annotations.geojson_io import save_geojson
from histoviewer.core.annotations.model import AnnotationSet
from histoviewer.core.annotations.shapes import Annotation, ShapeKind


def _inside(poly: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vertex pair by vertex pair (no library)."""
    inside = np.zeros(x.shape, bool)
    xs, ys = poly[:, 0], poly[:, 1]
    for k in range(len(poly)):
        x1, y1, x2, y2 = xs[k - 1], ys[k - 1], xs[k], ys[k]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < x_at)
    return inside


def _reference_mask(truth: Truth) -> tuple[np.ndarray, list[int]]:
    """The challenge's level-5 evaluation mask of a whole slide (origin at level-0 (0, 0)) and
    its ITC labels, written plainly."""
    pts = np.concatenate(truth.tumour)
    h, w = int(pts[:, 1].max() // 32) + 12, int(pts[:, 0].max() // 32) + 12
    mask = np.zeros((h, w), bool)

    def inside(poly):  # on the level-5 pixels of the polygon's bounding box only
        (j0, i0), (j1, i1) = (poly.min(0) // 32).astype(int), (poly.max(0) // 32).astype(int) + 1
        ii, jj = np.mgrid[max(i0, 0):min(i1, h), max(j0, 0):min(j1, w)]
        # the level-0 pixel centre each level-5 pixel takes
        return ii, jj, _inside(poly, jj * 32 + 0.5, ii * 32 + 0.5)

    for poly in truth.tumour:
        ii, jj, hit = inside(poly)
        mask[ii[hit], jj[hit]] = True
    for poly in truth.excluded:
        ii, jj, hit = inside(poly)
        mask[ii[hit], jj[hit]] = False
    distance = ndimage.distance_transform_edt(~mask)
    labels = measure.label(ndimage.binary_fill_holes(distance < 75 / (0.243 * 32 * 2)), connectivity=2)
    props = measure.regionprops(labels)
    itc = [p.label for p in props if p.axis_major_length < 275 / (0.243 * 32)]
    return labels, itc


def _reference_froc(cases: list[tuple[Truth, list[tuple[float, int, int]]]]) -> float:
    fp_probs, tp_probs, n_tumours = [], [], 0
    for truth, dets in cases:
        if not truth.tumour:
            fp_probs += [p for p, _, _ in dets]
            continue
        labels, itc = _reference_mask(truth)
        tp = np.zeros(labels.max(), np.float32)
        for p, x, y in dets:
            hit = labels[y // 32, x // 32]
            if hit == 0:
                fp_probs.append(p)
            elif hit not in itc and p > tp[hit - 1]:
                tp[hit - 1] = p
        tp_probs += list(tp)
        n_tumours += labels.max() - len(itc)
    all_probs = sorted(set(fp_probs + tp_probs))
    fps, tps = [], []
    fp_array, tp_array = np.asarray(fp_probs), np.asarray(tp_probs)  # float64, float32
    for t in all_probs[1:]:
        fps.append((fp_array >= t).sum())
        tps.append((tp_array >= t).sum())
    fps.append(0)
    tps.append(0)
    fps_per_slide = np.asarray(fps) / len(cases)
    sensitivity = np.asarray(tps) / n_tumours
    return float(np.mean(np.interp([0.25, 0.5, 1, 2, 4, 8], fps_per_slide[::-1], sensitivity[::-1])))


@pytest.fixture(scope="module")
def camelyon(shared_data):
    folder = shared_data / "annotations" / "camelyon16-train"
    if not folder.is_dir():
        pytest.skip("no CAMELYON16 annotations in ../shared/data")
    return {n: read_truth(folder / f"{n}.json") for n in ("Tumor_030", "Tumor_081", "Tumor_098", "Tumor_107", "Tumor_017")}


def _detections(truth: Truth, rng: np.random.Generator) -> list[tuple[float, int, int]]:
    """Points on lesion vertices (hits), near them (border cases) and far away, with
    probabilities that tie, repeat and include 0."""
    out = []
    for poly in truth.tumour:
        for k in rng.choice(len(poly), size=min(3, len(poly)), replace=False):
            x, y = poly[k] + rng.normal(0, 60, 2)
            out.append((float(rng.choice([0.0, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0])), int(abs(x)), int(abs(y))))
    pts = np.concatenate(truth.tumour)
    for _ in range(8):
        x, y = rng.uniform(pts.min(0), pts.max(0))
        out.append((float(rng.choice([0.0, 0.1, 0.3, 0.5, 0.8])), int(x), int(y)))
    return out


def test_official_froc_matches_a_plain_reimplementation_on_real_lesions(camelyon):
    rng = np.random.default_rng(7)
    cases = [(t, _detections(t, rng)) for t in camelyon.values()]
    cases += [(Truth(()), [(0.3, 10, 10), (0.6, 20, 20), (0.0, 5, 5)]), (Truth(()), [])]
    ours = froc_official([evaluate_slide_official(f"s{i}", t, [Detection(x, y, p) for p, x, y in d])
                          for i, (t, d) in enumerate(cases)])
    assert ours.variant == "official"
    assert ours.score == pytest.approx(_reference_froc(cases), abs=1e-12)
    # and the lesion and ITC counts are the challenge's
    for t in camelyon.values():
        labels, itc = _reference_mask(t)
        ev = evaluate_slide_official("x", t, [])
        assert (len(ev.lesion_scores), ev.itc_lesions) == (labels.max() - len(itc), len(itc))


def _square(x, y, side):
    return np.array([(x, y), (x + side, y), (x + side, y + side), (x, y + side)], float)


def test_official_quirks_by_construction():
    big = Truth((_square(3200, 3200, 3200),))  # 100 level-5 px: far above the ITC limit
    # a lone detection: its probability is the lowest threshold and is dropped -> nothing counts
    assert froc_official([evaluate_slide_official("a", big, [Detection(4000, 4000, 0.8)])]).score == 0.0
    # probability 0 never hits (the lesion stays at 0) and never counts as a FP
    ev = evaluate_slide_official("a", big, [Detection(4000, 4000, 0.0), Detection(10, 10, 0.0)])
    assert ev.lesion_scores == (None,) and ev.fp_scores == (0.0,)
    # missed lesion (0) is the lowest: 0.8 kept; one FP at 0.3 over 2 slides
    r = froc_official([evaluate_slide_official("a", big, [Detection(4000, 4000, 0.8)]),
                       evaluate_slide_official("b", big, [Detection(10, 10, 0.3)])])
    # thresholds 0.3 (FP 0.5/slide, sens 0.5) and 0.8 (0, 0.5); interp: 0.5 everywhere
    assert r.score == pytest.approx(0.5) and r.lesions == 2
    # the lowest probability of the whole set is dropped even when it is a hit: sensitivity 0
    r = froc_official([evaluate_slide_official("a", big, [Detection(4000, 4000, 0.4), Detection(10, 10, 0.9)]),
                       evaluate_slide_official("b", Truth(()), [Detection(10, 10, 0.5)])])
    assert set(r.sensitivity_at.values()) == {0.0}
    # with a missed lesion (0) the 0.4 hit counts; the curve (FPs/slide, sens) is
    # 0.4: (1, 1/2), 0.5: (1, 0), 0.9: (1/2, 0), then (0, 0); numpy.interp on it, held flat
    # past its end, takes the last of the tied points at 1 FP/slide
    r = froc_official([evaluate_slide_official("a", big, [Detection(4000, 4000, 0.4), Detection(10, 10, 0.9)]),
                       evaluate_slide_official("b", big, [Detection(10, 10, 0.5)])])
    assert r.sensitivity_at == {0.25: 0.0, 0.5: 0.0, 1.0: 0.5, 2.0: 0.5, 4.0: 0.5, 8.0: 0.5}
    # float32 lesion scores: a hit at 0.3 and a FP at 0.3 are two thresholds, as in the script
    ev = evaluate_slide_official("a", big, [Detection(4000, 4000, 0.3), Detection(10, 10, 0.3)])
    assert ev.lesion_scores[0] == float(np.float32(0.3)) != 0.3


def test_official_ignores_the_slide_scale_and_exact_geometry_does_not():
    # a 160 um lesion at 0.243 um/px: 658 px; dilated ~235 um major axis < 275: ITC either way
    small = Truth((_square(6400, 6400, 658),))
    assert evaluate_slide_official("a", small, []).itc_lesions == 1
    assert evaluate_slide("a", small, [], 0.243).itc_lesions == 1
    # at 0.5 um/px the same pixels are 329 um: required in exact geometry, still ITC officially
    assert evaluate_slide("a", small, [], 0.5).itc_lesions == 0
    assert evaluate_slide_official("a", small, []).itc_lesions == 1
    # exact-geometry drops probability-0 detections too, and names itself
    ev = evaluate_slide("a", Truth((_square(0, 0, 3000),)), [Detection(1500, 1500, 0.0), Detection(9e4, 9e4, 0.0)], 0.243)
    assert ev.lesion_scores == (None,) and ev.fp_scores == ()
    assert froc([ev, evaluate_slide("b", Truth(()), [], 0.243)]).variant == "exact-geometry"


_XML = """<?xml version="1.0"?>
<ASAP_Annotations><Annotations>
<Annotation Name="t" Type="Polygon" PartOfGroup="_0" Color="#F4FA58"><Coordinates>
<Coordinate Order="0" X="0" Y="0"/><Coordinate Order="1" X="4000" Y="0"/>
<Coordinate Order="2" X="4000" Y="4000"/><Coordinate Order="3" X="0" Y="4000"/></Coordinates></Annotation>
<Annotation Name="hole" Type="Polygon" PartOfGroup="_2" Color="#F4FA58"><Coordinates>
<Coordinate Order="0" X="1000" Y="1000"/><Coordinate Order="1" X="3000" Y="1000"/>
<Coordinate Order="2" X="3000" Y="3000"/><Coordinate Order="3" X="1000" Y="3000"/></Coordinates></Annotation>
<Annotation Name="n" Type="Polygon" PartOfGroup="Normal" Color="#F4FA58"><Coordinates>
<Coordinate Order="0" X="20000" Y="0"/><Coordinate Order="1" X="30000" Y="0"/>
<Coordinate Order="2" X="30000" Y="9000"/></Coordinates></Annotation>
<Annotation Name="u" Type="Polygon" PartOfGroup="None" Color="#F4FA58"><Coordinates>
<Coordinate Order="0" X="0" Y="20000"/><Coordinate Order="1" X="9000" Y="20000"/>
<Coordinate Order="2" X="9000" Y="29000"/></Coordinates></Annotation>
<Annotation Name="p" Type="PointSet" PartOfGroup="_0" Color="#F4FA58"><Coordinates>
<Coordinate Order="0" X="40000" Y="40000"/><Coordinate Order="1" X="40100" Y="40000"/>
<Coordinate Order="2" X="40100" Y="40100"/></Coordinates></Annotation>
</Annotations><AnnotationGroups>
<Group Name="_0" PartOfGroup="None" Color="#ff0000"><Attributes/></Group>
<Group Name="_2" PartOfGroup="None" Color="#00ff00"><Attributes/></Group>
<Group Name="Normal" PartOfGroup="None" Color="#00ff00"><Attributes/></Group>
</AnnotationGroups></ASAP_Annotations>
"""


def test_one_truth_rule_for_xml_and_geojson(tmp_path):
    xml = tmp_path / "s.xml"
    xml.write_text(_XML)
    truth_xml = read_truth(xml)
    # tumour: the _0 square only; the _2 square is a cut-out, Normal too; unclassified and the
    # point set are not tumour, and say so
    assert len(truth_xml.tumour) == 1 and len(truth_xml.excluded) == 2
    assert any("unclassified" in w for w in truth_xml.warnings)
    assert any("points" in w for w in truth_xml.warnings)
    # the same truth as GeoJSON, the cut-out as a hole of the tumour polygon
    outer = Annotation(ShapeKind.POLYGON, ((0, 0), (4000, 0), (4000, 4000), (0, 4000)), class_name="Tumor",
                       l0_holes=(((1000, 1000), (3000, 1000), (3000, 3000), (1000, 3000)),))
    others = (Annotation(ShapeKind.POLYGON, ((0, 20000), (9000, 20000), (9000, 29000))),
              Annotation(ShapeKind.POINTS, ((40000, 40000), (40100, 40000)), class_name="Tumor"))
    gj = tmp_path / "s.geojson"
    save_geojson(gj, AnnotationSet((outer, *others)))
    truth_gj = read_truth(gj)
    assert len(truth_gj.tumour) == 1 and len(truth_gj.excluded) == 1
    dets = [Detection(2000, 2000, 0.9), Detection(500, 500, 0.7), Detection(25000, 24000, 0.6),
            Detection(3500, 500, 0.4), Detection(40050, 40020, 0.8)]
    for evaluate, metric in ((evaluate_slide_official, froc_official),
                             (lambda *a, **k: evaluate_slide(*a, 0.243, **k), froc)):
        a = metric([evaluate("s", truth_xml, dets), evaluate("n", Truth(()), [Detection(1, 1, 0.5)])])
        b = metric([evaluate("s", truth_gj, dets), evaluate("n", Truth(()), [Detection(1, 1, 0.5)])])
        assert a.to_dict() == b.to_dict()
        # the hole's centre (2000, 2000) is tumour-free, but within the filled evaluation
        # region: filled holes belong to the lesion in both rules
        assert a.per_slide[0].fp_scores == b.per_slide[0].fp_scores


def test_qupath_detections_are_not_truth(tmp_path):
    doc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100], [0, 0]]]},
         "properties": {"objectType": "detection", "classification": {"name": "Tumor"}}}]}
    path = tmp_path / "d.geojson"
    path.write_text(json.dumps(doc))
    truth = read_truth(path)
    assert truth.tumour == () and any("detection" in w for w in truth.warnings)
