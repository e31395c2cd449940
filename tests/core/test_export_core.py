"""Colour maps, blending, outlines and the streaming PNG writer of the export package."""

from __future__ import annotations

import io
import math
import threading

import numpy as np
import pytest
from PIL import Image

from histoviewer.core.annotations.geojson_io import PolygonAnnotation
from histoviewer.core.errors import Cancelled, ExportCancelled
from histoviewer.core.colormaps import (COLORMAPS, apply_colormap, blend_heatmap, heatmap_mask,
                                               heatmap_rgba)
from histoviewer.core.export.outline import max_feret_segment, outlines_from_annotations
from histoviewer.core.export.png_stream import PngStripWriter
from histoviewer.core.export.requests import parse_region
from histoviewer.core.geometry import max_feret_diameter
from histoviewer.core.progress import JobControl


def test_tables_are_256_rgb_and_match_published_endpoints():
    for name, lut in COLORMAPS.items():
        assert lut.shape == (256, 3) and lut.dtype == np.uint8, name
    # matplotlib's viridis(0) = (0.267, 0.005, 0.329), viridis(1) = (0.993, 0.906, 0.144)
    assert tuple(COLORMAPS["viridis"][0]) == (68, 1, 84)
    assert tuple(COLORMAPS["viridis"][255]) == (253, 231, 37)
    assert tuple(COLORMAPS["magma"][255]) == (252, 253, 191)
    assert tuple(COLORMAPS["grey"][128]) == (128, 128, 128)


def test_perceptual_maps_get_lighter_with_probability():
    v = np.linspace(0, 1, 256)
    for name in ("viridis", "magma", "inferno", "grey"):
        rgb = apply_colormap(v, name).astype(float)
        lum = rgb @ [0.2126, 0.7152, 0.0722]
        assert np.all(np.diff(lum) > -1.0), name  # monotone up to 8-bit rounding


def test_unknown_colormap_names_the_known_ones():
    with pytest.raises(ValueError, match="viridis"):
        apply_colormap(np.zeros(3), "jet")


def test_blend_leaves_base_where_nothing_is_drawn():
    base = np.full((1, 6, 3), 100, np.uint8)
    prob = np.array([[np.nan, -1.0, -2.0, 0.3, 0.5, 1.0]], np.float32)
    out = blend_heatmap(base, prob, "viridis", opacity=1.0, threshold=0.5)
    assert np.all(out[0, :4] == 100)  # NaN, background, failed, below threshold
    assert tuple(out[0, 4]) == tuple(COLORMAPS["viridis"][128])
    assert tuple(out[0, 5]) == tuple(COLORMAPS["viridis"][255])
    half = blend_heatmap(base, prob, "grey", opacity=0.5, threshold=0.0)
    assert tuple(half[0, 5]) == (178, 178, 178)  # (255 + 100) / 2 rounded
    assert np.array_equal(blend_heatmap(base, prob, "grey", opacity=0.0), base)
    assert heatmap_mask(prob, 0.5).tolist() == [[False, False, False, False, True, True]]
    rgba = heatmap_rgba(prob, "viridis", 0.5, 0.5)
    assert rgba[0, :4, 3].tolist() == [0, 0, 0, 0] and rgba[0, 4, 3] == 128


def test_max_feret_segment_is_the_diameter():
    rng = np.random.default_rng(3)
    for _ in range(20):
        pts = rng.normal(size=(rng.integers(3, 300), 2)) * rng.uniform(1, 1000)
        a, b = max_feret_segment(pts)
        assert math.dist(a, b) == pytest.approx(max_feret_diameter(pts), rel=1e-12)
        assert any(np.allclose(p, a) for p in pts) and any(np.allclose(p, b) for p in pts)


def test_real_camelyon_lesions_get_their_diameter(shared_data):
    """Every positive polygon of a real CAMELYON16 slide: segment length == Feret diameter,
    and the converted outline carries that segment."""
    import json

    files = sorted((shared_data / "annotations" / "camelyon16-train").glob("*.json"))
    if not files:
        pytest.skip("no CAMELYON16 annotation files in the shared data")
    doc = json.loads(files[0].read_text())
    anns = [PolygonAnnotation(p["name"], tuple(map(tuple, p["vertices"])))
            for p in doc["positive"] if len(p["vertices"]) >= 3]
    assert anns
    outlines = outlines_from_annotations(anns, mpp=0.243)
    for ann, outline in zip(anns, outlines):
        d = max_feret_diameter(np.asarray(ann.l0_points))
        assert math.dist(*outline.l0_diameter) == pytest.approx(d, rel=1e-12)
        assert f"{d * 0.243 / 1000:.2f} mm" in outline.label


def test_outlines_from_annotations_give_lesions_diameters_and_labels():
    square = ((0, 0), (4000, 0), (4000, 3000), (0, 3000))  # 5000 px diagonal
    anns = [PolygonAnnotation("m1", square), PolygonAnnotation("x", square, group="_2"),
            PolygonAnnotation("note", square, classification="Other", color=(0, 200, 0))]
    tumour, excluded, other = outlines_from_annotations(anns, mpp=0.5)
    assert math.dist(*tumour.l0_diameter) == pytest.approx(5000)
    assert tumour.label == "m1 2.50 mm (macro)"
    assert excluded.l0_diameter is None and excluded.color != tumour.color
    assert other.l0_diameter is None and other.color == (0, 200, 0)
    (no_scale,) = outlines_from_annotations(anns[:1], mpp=None)
    assert no_scale.label == "m1 5000 px"


def test_png_strip_writer_round_trips_through_pillow():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    buf = io.BytesIO()
    w = PngStripWriter(buf, 53, 37, {"Software": "test", "Comment": "\u00b5m and \u2264"})
    for start in range(0, 37, 10):
        w.add_rows(img[start : start + 10])
    w.close()
    back = Image.open(io.BytesIO(buf.getvalue()))
    assert np.array_equal(np.asarray(back.convert("RGB")), img)
    assert back.text["Software"] == "test" and back.text["Comment"] == "\u00b5m and \u2264"


def test_png_strip_writer_refuses_missing_rows():
    w = PngStripWriter(io.BytesIO(), 4, 4)
    w.add_rows(np.zeros((3, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="3 of 4"):
        w.close()


def test_control_accepts_event_or_callable():
    ev = threading.Event()
    JobControl(cancel=ev).check()
    ev.set()
    with pytest.raises(Cancelled) as raised:
        JobControl(cancel=ev).check("analysis")
    assert type(raised.value) is Cancelled and "analysis cancelled" in str(raised.value)
    with pytest.raises(ExportCancelled):
        JobControl(cancel=lambda: True).check("export", ExportCancelled)
    seen = []
    control = JobControl(progress=lambda *args: seen.append(args))
    control.report("Rendering", 1, 2)
    with control.stage("Writing", 3) as stage:
        stage.set_postfix_str("tile 2")
        stage.update(2)
    assert seen == [("Rendering", 1, 2, ""), ("Writing", 0, 3, ""), ("Writing", 2, 3, "tile 2")]


def test_outlines_from_an_open_annotation_document():
    """The viewer's annotations as export outlines: class colours, tumour diameters and size
    classes as the panel measures them (an ellipse exactly), rulers labelled, points left out."""
    from histoviewer.core.annotations import Annotation, ShapeKind
    from histoviewer.core.annotations.document import AnnotationDocument
    from histoviewer.core.export.outline import outlines_from_document

    doc = AnnotationDocument(mpp=0.25)
    tumour = doc.add(Annotation(ShapeKind.ELLIPSE, ((1000.0, 1000.0), (5000.0, 3000.0)), "Tumor", "big"))
    doc.add(Annotation(ShapeKind.RECTANGLE, ((0.0, 0.0), (400.0, 200.0)), "Normal", "island"))
    doc.add(Annotation(ShapeKind.LINE, ((0.0, 0.0), (300.0, 400.0)), None, "ruler"))
    doc.add(Annotation(ShapeKind.POINTS, ((10.0, 10.0), (20.0, 20.0)), "Other", "cells"))
    outlines = outlines_from_document(doc)
    assert len(outlines) == 3  # the points are not outlines
    big = outlines[0]
    assert big.color == tuple(doc.class_named("Tumor").rgb)
    assert big.label == "big 1.00 mm (micro)"  # a 4000 px = 1.0 mm major axis
    (ax, ay), (bx, by) = big.l0_diameter
    assert ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5 == pytest.approx(4000, rel=0.01)
    assert doc.measure(tumour).max_diameter_mm == pytest.approx(1.0)
    island, ruler = outlines[1], outlines[2]
    assert island.l0_diameter is None and island.label == ""
    assert ruler.label == "ruler" and len(ruler.l0_points) == 2
    unknown = AnnotationDocument(mpp=None)
    unknown.add(Annotation(ShapeKind.POLYGON, ((0.0, 0.0), (800.0, 0.0), (0.0, 600.0)), "Tumor", "t"))
    (only,) = outlines_from_document(unknown)
    assert only.label == "t 1000 px"


@pytest.mark.parametrize("text", ["10,20,300,400", "10, 20, 300, 400", "10 20 300 400", "10;20;300;400",
                                  "  10, 20 300;400 ", "10\t20\t300\t400", "1e1,2e1,3e2,4e2"])
def test_parse_region_accepts_commas_semicolons_and_spaces(text):
    assert parse_region(text) == (10.0, 20.0, 300.0, 400.0)


@pytest.mark.parametrize(("text", "problem"), [
    ("1,2,3", "x, y, width, height"), ("1,2,3,4,5", "x, y, width, height"), ("", "x, y, width, height"),
    ("a,2,3,4", "numbers"), ("1,2,0,4", "positive"), ("1,2,3,-4", "positive"), ("1,2,nan,4", "finite"),
])
def test_parse_region_names_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_region(text)


def test_an_exports_coverage_counts_classified_cells_only():
    """Failed cells are not coverage (issue 14: summary.json said 1.0 with every patch failed;
    an export's provenance counted failed cells as covered the same way)."""
    from histoviewer.core.export.source import HeatmapData
    from histoviewer.core.grid_geometry import GridGeometry
    from histoviewer.core.models.record import ModelRecord

    geometry = GridGeometry.for_slide((400, 200), 1.0, 1.0, 100)  # 2 rows x 4 cols
    # background, two classified, one failed, one not computed yet, and three more classified
    encoded = np.array([[-1.0, 0.2, 0.9, -2.0], [np.nan, 0.1, 0.0, 0.7]], np.float32)
    data = HeatmapData(encoded, geometry, ModelRecord(name="m", display_name="m"))
    assert data.coverage() == pytest.approx(5 / 7)
