"""The annotation panel and the window's annotation actions: list, fly-to, classes, live
size classes, slide label, AI lesions, import/export, autosave and recovery."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from histoviewer.core.annotations import Annotation, ShapeKind, load_annotations
from histoviewer.core.annotations.store import autosave_candidates
from tests.qt.conftest import open_settled
from tests.qt.test_annotation_tools import MPP


def circle(cx: float, cy: float, diameter_l0: float, n: int = 64) -> tuple[tuple[float, float], ...]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = diameter_l0 / 2
    return tuple(zip((cx + r * np.cos(t)).tolist(), (cy + r * np.sin(t)).tolist()))


def test_class_change_reclassifies_at_once(window, qtbot, tab):
    doc, panel = tab.annotations, window.annotation_actions.panel
    # 1.0 mm across at 0.5 um/px: a micrometastasis once it is called tumour.
    uid = doc.add(Annotation(ShapeKind.POLYGON, circle(1500, 1500, 2000), class_name="Normal", name="region A"))
    tab.annotation_tools.select(uid)
    assert "size class:" not in panel.measure_label.text()
    assert "largest diameter 1.000 mm" in panel.measure_label.text()
    i = panel.class_combo.findData("Tumor")
    panel.class_combo.setCurrentIndex(i)
    panel.class_combo.activated.emit(i)
    assert doc.get(uid).class_name == "Tumor"
    assert "size class: micro" in panel.measure_label.text()
    row = panel.model.row_of(uid)
    assert panel.model.data(panel.model.index(row, 2)).endswith("(micro)")
    # Dragging a vertex out re-classifies live, before the release commits it.
    view = tab.view
    from histoviewer.core.tiles.viewport import Viewport
    view.set_viewport(Viewport(1500, 1500, 0.3, view.width(), view.height()))
    sx, sy = view.viewport.l0_to_screen(*doc.get(uid).l0_points[0])
    start = QPoint(round(sx), round(sy))
    end = QPoint(round(sx) + 600, round(sy))  # +2000 l0 px: 2 mm more across
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view, start + QPoint(10, 0))
    qtbot.mouseMove(view, end)
    assert "size class: macro" in panel.measure_label.text()
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=end)
    assert doc.measure(uid).size_class.value == "macro"
    assert "size class: macro" in panel.measure_label.text()


def test_list_filter_counts_and_fly_to(window, qtbot, tab):
    doc, panel, view = tab.annotations, window.annotation_actions.panel, tab.view
    doc.add(Annotation(ShapeKind.RECTANGLE, ((100, 100), (300, 300)), class_name="Suspect"))
    far = doc.add(Annotation(ShapeKind.ELLIPSE, ((2600, 2500), (2800, 2700)), class_name="Normal", name="far"))
    doc.add(Annotation(ShapeKind.RECTANGLE, ((1000, 1000), (1200, 1100)), class_name="Suspect"))
    assert panel.model.rowCount() == 3
    panel.filter_combo.setCurrentIndex(panel.filter_combo.findData("Suspect"))
    assert panel.model.rowCount() == 2
    panel.filter_combo.setCurrentIndex(0)
    summaries = {s.class_name: s for s in doc.class_summaries()}
    row = next(r for r in range(panel.class_table.rowCount()) if panel.class_table.item(r, 0).text() == "Suspect")
    assert panel.class_table.item(row, 2).text() == "2"
    assert float(panel.class_table.item(row, 3).text()) == pytest.approx(summaries["Suspect"].area_mm2, rel=1e-3)
    assert summaries["Suspect"].area_mm2 == pytest.approx((200 * 200 + 200 * 100) * MPP**2 / 1e6)

    index = panel.model.index(panel.model.row_of(far), 0)
    panel.list_view.clicked.emit(index)
    assert tab.annotation_tools.selected == far
    assert (view.viewport.l0_cx, view.viewport.l0_cy) == pytest.approx((2700, 2600), abs=1)
    sx0, sy0 = view.viewport.l0_to_screen(2600, 2500)
    sx1, sy1 = view.viewport.l0_to_screen(2800, 2700)
    assert 0 < sx0 < sx1 < view.width() and 0 < sy0 < sy1 < view.height()  # all of it in view
    assert sx1 - sx0 > view.width() / 4 or sy1 - sy0 > view.height() / 4  # and big


def test_name_note_and_class_editor(window, qtbot, tab):
    doc, panel = tab.annotations, window.annotation_actions.panel
    panel.show()  # the note is committed when it loses the keyboard focus
    uid = doc.add(Annotation(ShapeKind.RECTANGLE, ((100, 100), (300, 300)), class_name="Other"))
    tab.annotation_tools.select(uid)
    panel.name_edit.setText("check margin")
    panel.name_edit.editingFinished.emit()
    panel.note_edit.setFocus()
    panel.note_edit.setPlainText("ask for IHC")
    tab.view.setFocus()  # leaving the note commits it
    qtbot.waitUntil(lambda: doc.get(uid).note == "ask for IHC", timeout=2000)
    assert doc.get(uid).name == "check margin"

    panel.add_class("Necrosis", (90, 90, 90))
    assert doc.class_named("Necrosis") is not None
    assert window.annotation_actions.class_combo.findData("Necrosis") >= 0  # toolbar: new shapes
    row = next(r for r in range(panel.class_table.rowCount()) if panel.class_table.item(r, 0).text() == "Other")
    panel.class_table.item(row, 1).setCheckState(Qt.CheckState.Checked)  # "Other" is now sized as tumour
    assert doc.class_named("Other").is_tumour
    assert doc.measure(uid).size_class is not None
    doc.undo()
    assert not doc.class_named("Other").is_tumour


def test_recompute_label_and_convert_ai_lesions(window, qtbot, tab):
    from histoviewer.core.grid_geometry import GridGeometry
    from histoviewer.core.inference.grid import PredictionGrid

    actions, doc = window.annotation_actions, tab.annotations
    assert actions.recompute_label().label == "negative"
    assert "negative" in actions.panel.label_text.text()
    assert actions.convert_ai_lesions() == []  # no AI overlay: an error, nothing added
    assert "AI overlay" in window.last_error and len(doc) == 0

    geometry = GridGeometry.for_slide((3000, 3000), MPP, 1.0, 96)  # 192 l0 px cells
    grid = PredictionGrid(geometry)
    probs = np.zeros(geometry.shape, np.float32)
    probs[4:9, 4:9] = 0.97  # ~1 mm of tumour
    grid.set_values(np.arange(probs.size), probs.ravel())
    tab.heatmap = SimpleNamespace(live=SimpleNamespace(grid=grid, model=None))  # no model: threshold 0.5
    try:
        uids = actions.convert_ai_lesions()
    finally:
        tab.heatmap = None
    assert len(uids) == 1 and doc.undo_text == "Convert AI lesions to annotations"
    shown = tab.annotation_label.label  # issue 14: the label was left at "negative" here
    assert shown in ("micro", "macro") and f"Label (annotations): {shown}" == actions.label_status.text()
    doc.undo()  # and after undo
    assert actions.label_status.text() == "Label (annotations): negative"
    assert "negative" in actions.panel.label_text.text()
    doc.redo()
    assert actions.label_status.text() == f"Label (annotations): {shown}"
    label = actions.recompute_label()
    assert label.label in ("micro", "macro")
    assert f"Label (annotations): {label.label}" == actions.label_status.text()
    doc.set_class(uids, "Normal")  # the pathologist disagrees
    assert actions.recompute_label().label == "negative"

    # tissue unlike the model's training data: its lesions do not become tumour annotations
    from histoviewer.core.models.domain import OUT_OF_DOMAIN_REASON, DomainLimits

    far = np.full(probs.size, 50.0, np.float32)  # every patch far beyond the profile
    grid.set_values(np.arange(probs.size), probs.ravel(), far)
    limits = DomainLimits(patch_threshold=10.0, slide_share_threshold=0.5)
    tab.heatmap = SimpleNamespace(live=SimpleNamespace(grid=grid, model=SimpleNamespace(domain=limits, info=None)))
    n_before = len(doc)
    try:
        assert actions.convert_ai_lesions() == []
    finally:
        tab.heatmap = None
    assert OUT_OF_DOMAIN_REASON in window.last_error and len(doc) == n_before


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<ASAP_Annotations><Annotations><Annotation Name="&lol4;" Type="Polygon" PartOfGroup="_0" Color="#F4FA58">
<Coordinates><Coordinate Order="0" X="1" Y="1"/><Coordinate Order="1" X="5" Y="1"/>
<Coordinate Order="2" X="5" Y="5"/></Coordinates></Annotation></Annotations></ASAP_Annotations>
"""


def test_hostile_or_broken_import_leaves_the_document_untouched(window, qtbot, tab, tmp_path):
    actions, doc = window.annotation_actions, tab.annotations
    uid = doc.add(Annotation(ShapeKind.RECTANGLE, ((100, 100), (300, 300)), class_name="Tumor"))
    before, undo = doc.to_set(), doc.undo_text
    hostile = tmp_path / "lol.xml"
    hostile.write_text(BILLION_LAUGHS)
    start = time.perf_counter()
    assert not actions.import_file(hostile)
    assert time.perf_counter() - start < 2.0
    assert "lol.xml" in window.last_error
    broken = tmp_path / "broken.geojson"
    broken.write_text('{"type": "FeatureCollection", "features": [\n {"type": "Feature", "geometry": '
                      '{"type": "Polygon", "coordinates": [[[0, 0], [1, "x"], [1, 1]]]}, "properties": {}}]}')
    assert not actions.import_file(broken)
    assert "broken.geojson" in window.last_error and "feature 0" in window.last_error
    assert doc.to_set() == before and doc.undo_text == undo and uid in doc


def test_import_export_round_trip(window, qtbot, tab, tmp_path):
    actions, doc = window.annotation_actions, tab.annotations
    doc.add(Annotation(ShapeKind.POLYGON, circle(800, 900, 500), class_name="Tumor", name="a"))
    doc.add(Annotation(ShapeKind.RECTANGLE, ((100, 100), (300, 300)), class_name="Suspect", name="b"))
    doc.add(Annotation(ShapeKind.LINE, ((10, 10), (900, 400)), name="ruler"))
    for suffix in (".geojson", ".xml"):
        out = tmp_path / f"out{suffix}"
        assert actions.export_file(out)
        back = load_annotations(out).annotation_set.annotations
        assert [a.name for a in back] == ["a", "b", "ruler"]
        np.testing.assert_allclose(back[0].l0_points, doc.annotations()[0].l0_points)
    n = len(doc)
    assert actions.import_file(tmp_path / "out.geojson")
    assert len(doc) == 2 * n and doc.undo_text == "Import out.geojson"
    actions.undo()
    assert len(doc) == n


def test_exporting_annotations_over_the_slide_is_refused_with_a_message(window, tab, slide):
    tab.annotations.add(Annotation(ShapeKind.POLYGON, circle(800, 900, 500), class_name="Tumor", name="a"))
    before = slide.read_bytes()
    assert not window.annotation_actions.export_file(slide)
    assert slide.read_bytes() == before and "a file the job reads" in window.last_error


def test_autosave_and_recovery_after_a_simulated_kill(window, qtbot, tab, slide):
    doc = tab.annotations
    tab.autosaver.delay_s = 0.05
    uid = doc.add(Annotation(ShapeKind.POLYGON, circle(800, 900, 500), class_name="Tumor", name="kept"))
    beside = autosave_candidates(slide)[0]
    qtbot.waitUntil(beside.is_file, timeout=5000)  # the tab's timer ticked the autosaver
    doc.add(Annotation(ShapeKind.POINTS, ((5, 5),), name="lost"))  # after the last autosave
    # A kill: nothing more reaches the disk (no flush on close).
    tab.autosaver.flush = lambda: None
    tab.autosaver.close = lambda: None
    window.close_tab(0)

    again = open_settled(window, qtbot, slide)
    assert [a.name for a in again.annotations] == ["kept"]
    assert again.annotations.get(uid).l0_points == doc.get(uid).l0_points
    assert "Restored 1 annotation from the autosave of" in window.statusBar().currentMessage()
    assert not again.annotations.can_undo


def test_close_saves_pending_edits(window, qtbot, tab, slide):
    tab.annotations.add(Annotation(ShapeKind.RECTANGLE, ((100, 100), (300, 300)), name="saved on close"))
    window.close_tab(0)  # long before the autosave delay
    found = load_annotations(autosave_candidates(slide)[0]).annotation_set.annotations
    assert [a.name for a in found] == ["saved on close"]


def test_damaged_autosave_is_set_aside_not_overwritten(window, qtbot, slide):
    beside = autosave_candidates(slide)[0]
    beside.write_text('{"type": "FeatureCollection", "features": [')
    tab = open_settled(window, qtbot, slide)
    assert tab.annotation_error and "renamed" in tab.annotation_error
    assert (beside.parent / (beside.name + ".damaged")).read_text().startswith('{"type"')
    assert len(tab.annotations) == 0
