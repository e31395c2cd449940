"""Annotation shapes, measurements, the undoable document, spatial queries and labels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from histoviewer.core.annotations import (
    Annotation,
    AnnotationClass,
    AnnotationDocument,
    AnnotationSet,
    ShapeKind,
    add_lesion_annotations,
    measure,
    slide_label,
)
from histoviewer.core.annotations.classes import parse_color
from histoviewer.core.annotations.measure import ellipse_perimeter
from histoviewer.core.annotations.shapes import ellipse_outline
from histoviewer.core.annotations.spatial import GridIndex, display_shape
from histoviewer.core.geometry import max_feret_diameter_brute_force, polygon_area
from histoviewer.core.staging_terms import SizeClass

K = ShapeKind


def square(x, y, side, **kw) -> Annotation:
    return Annotation(K.POLYGON, ((x, y), (x + side, y), (x + side, y + side), (x, y + side)), **kw)


# --- shapes and measurements -------------------------------------------------------------

def test_shapes_validate_and_keep_their_defining_points():
    r = Annotation(K.RECTANGLE, ((10, 20), (0, 0)))
    assert r.box() == (0, 0, 10, 20) and r.outline() == ((0, 0), (10, 0), (10, 20), (0, 20))
    assert r.l0_points == ((10.0, 20.0), (0.0, 0.0))  # as drawn: the dragged corner stays editable
    closed = Annotation(K.POLYGON, ((0, 0), (1, 0), (1, 1), (0, 0)))
    assert closed.l0_points == ((0, 0), (1, 0), (1, 1))
    with pytest.raises(ValueError, match="at least 3"):
        Annotation(K.POLYGON, ((0, 0), (1, 1)))
    with pytest.raises(ValueError, match="exactly 2"):
        Annotation(K.ELLIPSE, ((0, 0), (1, 1), (2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        Annotation(K.LINE, ((0, 0), (math.nan, 1)))
    with pytest.raises(ValueError, match="holes"):
        Annotation(K.LINE, ((0, 0), (1, 1)), l0_holes=(((0, 0), (1, 0), (1, 1)),))
    e = ellipse_outline(0, 0, 100, 50)
    xs, ys = zip(*e)
    assert (min(xs), max(xs), min(ys), max(ys)) == (0, 100, 0, 50)  # extremes exact


def test_measurements_are_analytic_and_in_physical_units():
    mpp = 0.25
    rect = measure(Annotation(K.RECTANGLE, ((0, 0), (4000, 3000))), mpp, is_tumour=True)
    assert rect.area_mm2 == pytest.approx(1.0 * 0.75)
    assert rect.max_diameter_mm == pytest.approx(1.25) and rect.size_class is SizeClass.MICRO
    ell = measure(Annotation(K.ELLIPSE, ((0, 0), (10000, 4000))), mpp, is_tumour=True)
    assert ell.area_mm2 == pytest.approx(math.pi * 1.25 * 0.5)
    assert ell.max_diameter_mm == pytest.approx(2.5) and ell.size_class is SizeClass.MACRO
    assert ell.perimeter_um == pytest.approx(ellipse_perimeter(5000, 2000) * mpp)
    # Ramanujan against a fine numerical integration of the arc length
    t = np.linspace(0, 2 * np.pi, 200001)
    arc = np.hypot(np.diff(5000 * np.cos(t)), np.diff(2000 * np.sin(t))).sum()
    assert ellipse_perimeter(5000, 2000) == pytest.approx(arc, rel=1e-8)
    holed = Annotation(K.POLYGON, ((0, 0), (1000, 0), (1000, 1000), (0, 1000)),
                       l0_holes=(((100, 100), (300, 100), (300, 300), (100, 300)),))
    m = measure(holed, mpp)
    assert m.area_px2 == 1000 * 1000 - 200 * 200 and m.size_class is None  # not a tumour class
    assert m.perimeter_um == pytest.approx(4000 * mpp)
    line = measure(Annotation(K.LINE, ((0, 0), (300, 400), (300, 800))), mpp)
    assert line.length_um == pytest.approx(900 * mpp) and line.area_px2 is None
    assert "length 225 \u00b5m" in line.summary()
    tiny = measure(square(0, 0, 400, class_name="Tumor"), mpp, is_tumour=True)
    assert tiny.size_class is SizeClass.ITC  # 0.141 mm diagonal
    unknown = measure(square(0, 0, 400), None, is_tumour=True)
    assert unknown.area_mm2 is None and unknown.size_class is SizeClass.UNKNOWN
    assert unknown.area_px2 == 160000 and "scale unknown" in unknown.summary()
    assert measure(Annotation(K.POINTS, ((1, 1), (2, 2))), mpp).summary() == "2 points"
    # a cell-sized detection reads in µm², not '7.071e-05 mm²' (seen with QuPath detections)
    cell = measure(square(0, 0, 10 / mpp), mpp)
    assert cell.area_text() == "area 100 \u00b5m\u00b2" and "e-0" not in cell.summary()
    assert measure(square(0, 0, 400), mpp).area_text() == f"area {(400 * mpp) ** 2 / 1e6:.4g} mm\u00b2"
    with pytest.raises(ValueError, match="positive"):
        measure(square(0, 0, 1), 0.0)


def test_polygon_measurements_match_independent_computation():
    rng = np.random.default_rng(3)
    theta = np.sort(rng.uniform(0, 2 * np.pi, 300))
    r = 800 + 200 * rng.random(300)
    pts = np.column_stack([5e4 + r * np.cos(theta), 7e4 + r * np.sin(theta)])
    m = measure(Annotation(K.POLYGON, pts), 0.5, is_tumour=True)
    assert m.max_diameter_px == pytest.approx(max_feret_diameter_brute_force(pts), rel=1e-12)
    # area by rasterising on a 2 px grid (independent of the shoelace formula)
    from skimage.draw import polygon as fill
    rr, _ = fill((pts[:, 1] - 6.9e4) / 2, (pts[:, 0] - 4.9e4) / 2, (1100, 1100))
    assert m.area_px2 == pytest.approx(4 * len(rr), rel=0.01)


def test_parse_color_forms():
    assert parse_color([1, 2, 3]) == (1, 2, 3)
    assert parse_color("#F4FA58") == (0xF4, 0xFA, 0x58)
    assert parse_color(-0xFF0001) == (0, 255, 255)  # QuPath's signed ARGB int 0xFF00FFFF
    assert parse_color(0xFF102030) == (0x10, 0x20, 0x30)
    for bad in ([1, 2], [300, 0, 0], "red", True, [1.5, 2, 3]):
        with pytest.raises(ValueError):
            parse_color(bad)


# --- document: commands, undo/redo, notifications ----------------------------------------

def test_every_command_undoes_and_redoes():
    doc = AnnotationDocument(mpp=0.5)
    changes = []
    doc.subscribe(changes.append)
    a = doc.add(square(0, 0, 100, class_name="Tumor", name="a"))
    b = doc.add(Annotation(K.LINE, ((0, 0), (10, 0)), name="ruler"))
    snapshots = [doc.to_set()]
    doc.move([a, b], 5, 7)
    doc.set_vertex(a, 2, 500, 500)
    doc.insert_vertex(a, 1, 50, -10)
    doc.delete_vertex(a, 0)
    doc.set_class([a, b], "Suspect")
    doc.rename(a, "renamed")
    doc.set_note(b, "measured twice")
    doc.remove([a])
    steps = 8
    assert doc.undo_text == "Delete 1 annotation"
    final = doc.to_set()
    for _ in range(steps):
        assert doc.undo()
    assert doc.to_set() == snapshots[0]
    assert doc.annotations()[0].uid == a  # drawing order restored
    for _ in range(steps):
        assert doc.redo()
    assert doc.to_set() == final and not doc.redo()
    assert [c.source for c in changes[-2 * steps:]] == ["undo"] * steps + ["redo"] * steps
    assert changes[2].changed == (a, b) and changes[-1].removed == (a,)
    while doc.undo():
        pass
    assert len(doc) == 0 and not doc.can_undo


def test_new_edit_clears_redo_and_group_is_one_step():
    doc = AnnotationDocument()
    a = doc.add(square(0, 0, 10))
    doc.move([a], 1, 0)
    doc.undo()
    doc.move([a], 0, 1)
    assert not doc.can_redo
    calls = []
    doc.subscribe(calls.append)
    with doc.group("Drag"):
        for _ in range(10):
            doc.move([a], 1, 1)
    assert len(calls) == 1 and calls[0].description == "Drag"
    assert doc.get(a).l0_points[0] == (10, 11)
    doc.undo()
    assert doc.get(a).l0_points[0] == (0, 1)


def test_class_edits_are_undoable_and_relabel_annotations():
    doc = AnnotationDocument()
    a = doc.add(square(0, 0, 10, class_name="Tumor"))
    doc.rename_class("Tumor", "Metastasis")
    assert doc.get(a).class_name == "Metastasis" and doc.class_named("Metastasis").is_tumour
    doc.update_class("Metastasis", rgb=(1, 2, 3))
    doc.add_class(AnnotationClass("Necrosis", (9, 9, 9)))
    doc.remove_class("Metastasis")
    assert doc.get(a).class_name is None and doc.class_named("Metastasis") is None
    for _ in range(4):
        doc.undo()
    assert doc.get(a).class_name == "Tumor" and doc.class_named("Tumor").rgb == (200, 0, 0)
    with pytest.raises(ValueError, match="exists"):
        doc.add_class(AnnotationClass("Normal", (0, 0, 0)))
    doc.set_class([a], "Brand new")  # an unknown class is added with the edit, and undone with it
    assert doc.class_named("Brand new") is not None
    doc.undo()
    assert doc.class_named("Brand new") is None


def test_failed_edits_change_nothing():
    doc = AnnotationDocument()
    a = doc.add(square(0, 0, 10))
    rev = doc.revision
    doc.delete_vertex(a, 0)
    with pytest.raises(ValueError, match="at least 3"):
        doc.delete_vertex(a, 0)  # a triangle cannot lose a vertex
    doc.undo()
    with pytest.raises(IndexError):
        doc.set_vertex(a, 9, 0, 0)
    with pytest.raises(KeyError):
        doc.move(["missing"], 1, 1)
    with pytest.raises(ValueError, match="already open"):
        doc.add(doc.get(a))
    assert doc.get(a).n_vertices == 4 and doc.revision == rev + 2


def test_import_set_is_one_step_and_renews_clashing_ids():
    doc = AnnotationDocument()
    a = doc.add(square(0, 0, 10))
    incoming = AnnotationSet((square(5, 5, 10, uid=a, class_name="_0"), square(50, 50, 10)),
                             (AnnotationClass("_0", (255, 0, 0), True),))
    uids = doc.import_set(incoming)
    assert len(doc) == 3 and a not in uids[:1] and doc.class_named("_0").is_tumour
    doc.undo()
    assert len(doc) == 1 and doc.class_named("_0") is None
    doc.import_set(incoming, replace_all=True)
    assert len(doc) == 2
    doc.undo()
    assert [x.uid for x in doc] == [a]


# --- spatial queries and level of detail ---------------------------------------------------

def test_query_rect_matches_brute_force():
    rng = np.random.default_rng(0)
    doc = AnnotationDocument()
    anns = [square(float(x), float(y), float(s)) for x, y, s in
            zip(rng.uniform(0, 1e5, 3000), rng.uniform(0, 1e5, 3000), rng.uniform(5, 3000, 3000))]
    anns.append(square(-1e5, -1e5, 4e5))  # one huge annotation over many cells
    doc.add_many(anns)
    doc.remove([anns[5].uid])
    doc.move([anns[6].uid], 5e4, 0)
    for x0, y0, w, h in [(1e4, 2e4, 1920, 1080), (0, 0, 1e5, 1e5), (5e4, 5e4, 16, 16), (-5e5, -5e5, 10, 10)]:
        got = [a.uid for a in doc.query_rect(x0, y0, x0 + w, y0 + h)]
        want = [a.uid for a in doc.annotations()
                if (b := a.l0_bounds())[0] <= x0 + w and b[2] >= x0 and b[1] <= y0 + h and b[3] >= y0]
        assert got == want  # same set, drawing order


def test_grid_index_huge_query_scans():
    idx = GridIndex(l0_cell_px=10, scan_cells=4)
    idx.insert("a", (0, 0, 5, 5))
    idx.insert("b", (100, 100, 105, 105))
    assert idx.query(0, 0, 1000, 1000) == {"a", "b"}
    idx.remove("a")
    assert idx.query(0, 0, 1000, 1000) == {"b"} and idx.query(0, 0, 6, 6) == set()


def test_display_shapes_simplify_by_zoom():
    theta = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    blob = Annotation(K.POLYGON, np.column_stack([1e4 + 1000 * np.cos(theta), 1e4 + 1000 * np.sin(theta)]))
    fine = display_shape(blob, 0.25)
    coarse = display_shape(blob, 16)
    assert fine.kind == coarse.kind == "polygon"
    assert len(coarse.l0_points) < len(fine.l0_points) <= 4000
    # the simplified ring stays within half a screen pixel of the circle
    r = np.hypot(*(coarse.l0_points - 1e4).T)
    assert np.all(np.abs(r - 1000) <= 8 + 1e-6)
    assert display_shape(blob, 1000).kind == "dot"  # 2000 px wide, under 3 screen px
    assert display_shape(Annotation(K.ELLIPSE, ((0, 0), (100, 50))), 1).kind == "ellipse"
    doc = AnnotationDocument()
    doc.add(blob)
    first = doc.paint_list(0, 0, 2e4, 2e4, 16)[0]
    assert doc.paint_list(0, 0, 2e4, 2e4, 17)[0] is first  # same zoom octave: cached
    doc.move([blob.uid], 1, 0)
    assert doc.paint_list(0, 0, 2e4, 2e4, 16)[0] is not first  # edited: recomputed


def test_hit_test_picks_topmost_and_respects_holes():
    doc = AnnotationDocument()
    below = doc.add(square(0, 0, 100, name="below"))
    holed = doc.add(Annotation(K.POLYGON, ((0, 0), (100, 0), (100, 100), (0, 100)), name="holed",
                               l0_holes=(((40, 40), (60, 40), (60, 60), (40, 60)),)))
    ruler = doc.add(Annotation(K.LINE, ((200, 0), (300, 0)), name="ruler"))
    assert doc.hit_test(10, 10, 1).uid == holed
    assert doc.hit_test(50, 50, 1).uid == below  # inside the hole: falls through
    assert doc.hit_test(250, 0.5, 1).uid == ruler and doc.hit_test(250, 5, 1) is None


# --- class summaries, AI lesions and slide labels ------------------------------------------

def test_summaries_lesions_and_slide_label():
    doc = AnnotationDocument(mpp=0.25)
    assert slide_label(doc).label == "negative"
    uids = add_lesion_annotations(doc, [[(0, 0), (400, 0), (400, 400)], [(0, 0), (4000, 0), (4000, 4000)]])
    doc.add(square(0, 0, 40000, class_name="Normal"))
    assert doc.undo_text == "Add polygon"
    label = slide_label(doc)
    assert label.label == "micro" and [les.size_class for les in label.lesions] == [SizeClass.ITC, SizeClass.MICRO]
    assert doc.get(uids[0]).properties["source"] == "ai"
    doc.set_vertex(uids[1], 2, 40000, 4000)  # the pathologist stretches a lesion: macro at once
    assert doc.measure(uids[1]).size_class is SizeClass.MACRO and slide_label(doc).label == "macro"
    summary = {s.class_name: s for s in doc.class_summaries()}
    assert summary["Tumor"].count == 2 and summary["Normal"].count == 1 and summary["Suspect"].count == 0
    area = polygon_area(np.array([(0, 0), (400, 0), (400, 400)])) + polygon_area(np.array(doc.get(uids[1]).l0_points))
    assert summary["Tumor"].area_mm2 == pytest.approx(area * 0.25**2 / 1e6)
    doc.mpp = None
    assert slide_label(doc).label == "unknown"


def test_drawing_tools_make_shapes():
    from histoviewer.core.annotations.tools import TOOL_SHORTCUTS, Tool, freehand_from_stroke, shape_from_drag

    assert TOOL_SHORTCUTS[Tool.RECTANGLE] == "R" and len(set(TOOL_SHORTCUTS.values())) == len(Tool)
    r = shape_from_drag(Tool.RECTANGLE, (10, 10), (0, 30))
    assert r.kind is K.RECTANGLE and r.box() == (0, 10, 10, 30)
    assert shape_from_drag(Tool.ELLIPSE, (0, 0), (10, -4), square=True).box() == (0, -10, 10, 0)
    assert shape_from_drag(Tool.RULER, (0, 0), (3, 4)).kind is K.LINE
    assert shape_from_drag(Tool.RECTANGLE, (5, 5), (5, 5)) is None
    theta = np.linspace(0, 2 * np.pi, 2000)
    stroke = np.column_stack([500 + 100 * np.cos(theta), 500 + 100 * np.sin(theta)])
    lasso = freehand_from_stroke(stroke, 2.0, class_name="Suspect")
    assert lasso.kind is K.FREEHAND and 10 < len(lasso.l0_points) < 400
    assert measure(lasso, 1.0).area_px2 == pytest.approx(math.pi * 100**2, rel=0.02)
    assert freehand_from_stroke([(0, 0), (1, 1)], 1.0) is None
