"""Issue 14 in the viewer: autosave failures reach the user (a banner, not a dialog), values no
file can hold never stop a save, closing asks before unsaved edits are lost, and QuPath
detections are shown and counted but never sized, staged or edited as regions."""

from __future__ import annotations

import errno
import json

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication

from histoviewer.core.annotations import Annotation, ShapeKind, load_annotations, store
from histoviewer.core.annotations.store import autosave_candidates
from histoviewer.core.tiles.viewport import Viewport

NAN_AND_SURROGATE = ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
                     '{"type": "Polygon", "coordinates": [[[100, 100], [400, 100], [400, 400], [100, 100]]]}, '
                     '"properties": {"name": "bad \\ud800 name", "classification": "Tumor", '
                     '"measurements": {"Area": NaN}, "score": NaN}}]}')


def test_import_with_nan_and_a_lone_surrogate_saves_and_closes(window, qtbot, tab, slide, tmp_path):
    """The reported case: every autosave and the tab close failed with an uncaught error."""
    src = tmp_path / "qupath.geojson"
    src.write_text(NAN_AND_SURROGATE)
    assert window.annotation_actions.import_file(src)
    assert "read with changes" in window.statusBar().currentMessage()
    assert tab.flush_annotations()
    saved = load_annotations(autosave_candidates(slide)[0]).annotation_set.annotations
    assert [a.name for a in saved] == ["bad \ufffd name"] and saved[0].properties["score"] is None
    # The same values put into the document by code (not through the reader) are saved too,
    # and the banner says what had to change.
    tab.annotations.add(Annotation(ShapeKind.POINTS, ((5, 5),), name="x\udc80", properties={"d": float("inf")}))
    assert tab.flush_annotations()
    banner = tab.autosave_banner
    assert banner.level == "note" and not banner.isHidden()
    assert "written as null" in banner.text.text() and str(autosave_candidates(slide)[0]) in banner.text.text()
    assert [a.name for a in load_annotations(autosave_candidates(slide)[0]).annotation_set.annotations] == \
        ["bad \ufffd name", "x\ufffd"]
    assert window.close_tab(0) and window.tabs.count() == 0


def test_failed_autosave_is_shown_without_a_dialog_and_closing_asks(window, qtbot, tab, slide, monkeypatch):
    real_write = store.atomic_write_bytes
    full = {"on": True}

    def write(path, data):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", write)
    tab.autosaver.delay_s = 0.01
    tab.annotations.add(Annotation(ShapeKind.RECTANGLE, ((100, 100), (300, 300)), name="precious"))
    banner = tab.autosave_banner
    qtbot.waitUntil(lambda: banner.level == "error", timeout=5000)  # from the tab's own timer
    text = banner.text.text()
    assert "Annotations not saved" in text and "No space left on device" in text
    assert autosave_candidates(slide)[0].name in text
    assert QApplication.activeModalWidget() is None  # nothing blocks the work
    assert "Annotations not saved" in window.statusBar().currentMessage()

    asked = []
    tab.ask_close_unsaved = lambda parent, message: asked.append(message) or False  # "Keep it open"
    assert not window.close_tab(0)
    assert window.tabs.count() == 1 and "No space left" in asked[0]
    assert tab.autosaver.pending  # the edit is still there to be saved

    full["on"] = False  # the user freed some space and pressed Retry
    banner.retry_button.click()
    assert banner.level is None and banner.isHidden() and not tab.autosaver.pending
    assert [a.name for a in load_annotations(autosave_candidates(slide)[0]).annotation_set.annotations] == ["precious"]

    full["on"] = True
    tab.annotations.add(Annotation(ShapeKind.POINTS, ((5, 5),), name="later"))
    tab.ask_close_unsaved = lambda parent, message: asked.append(message) or True  # "Close anyway"
    assert window.close_tab(0) and window.tabs.count() == 0 and len(asked) == 2


def test_window_close_keeps_a_slide_whose_edits_cannot_be_saved(window, qtbot, tab, monkeypatch):
    monkeypatch.setattr(store, "atomic_write_bytes", lambda path, data: (_ for _ in ()).throw(OSError(errno.EROFS, "Read-only file system")))
    tab.annotations.add(Annotation(ShapeKind.POINTS, ((5, 5),), name="unsaved"))
    answers = [False, True]
    tab.ask_close_unsaved = lambda parent, message: answers.pop(0)
    window.close()
    assert window.tabs.count() == 1  # kept open: the close was refused
    window.close()
    assert window.tabs.count() == 0


QUPATH_CELLS = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
    [[1000 + 40 * i, 1000], [1030 + 40 * i, 1000], [1030 + 40 * i, 1030], [1000 + 40 * i, 1000]]]},
    "properties": {"objectType": "cell", "classification": {"name": "Tumor", "color": [200, 0, 0]}}}
    for i in range(5)]


def test_qupath_cells_are_shown_counted_not_staged_nor_moved(window, qtbot, tab, tmp_path):
    src = tmp_path / "cells.geojson"
    src.write_text(json.dumps(QUPATH_CELLS))
    actions = window.annotation_actions
    assert actions.import_file(src)
    message = window.statusBar().currentMessage()
    # said once, and no "Imported 0 annotations" before it
    assert message == "Imported 5 detections (shown, never sized or staged) from cells.geojson"
    panel = actions.panel
    assert not panel.detections_label.isHidden() and "5 detections (Tumor 5)" in panel.detections_label.text()
    assert actions.recompute_label().label == "negative"
    doc, view = tab.annotations, tab.view
    cell = doc.annotations()[0]
    view.set_viewport(Viewport(1015, 1015, 1.0, view.width(), view.height()))
    sx, sy = view.viewport.l0_to_screen(1020, 1010)
    start = QPoint(round(sx), round(sy))
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(view, start + QPoint(60, 40))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=start + QPoint(60, 40))
    assert tab.annotation_tools.selected == cell.uid  # selectable (to inspect, reclassify, delete) ...
    assert doc.get(cell.uid).l0_points == cell.l0_points and doc.undo_text.startswith("Import")  # ... not moved
    assert "cell from another tool: never sized or staged" in panel.measure_label.text()


def test_cells_alone_do_not_make_an_annotated_negative_node(window, qtbot, tab, slide, tmp_path):
    """Case staging takes an open slide's annotations as the node's label: QuPath cells alone
    must not turn a node nobody annotated into an annotated 'negative'."""
    src = tmp_path / "cells.geojson"
    src.write_text(json.dumps(QUPATH_CELLS))
    assert window.annotation_actions.import_file(src)
    assert window.cases._annotation_label_of(slide) is None
    tab.annotations.add(Annotation(ShapeKind.RECTANGLE, ((10, 10), (90, 90)), class_name="Normal"))
    assert window.cases._annotation_label_of(slide).label == "negative"


def test_the_banner_is_as_tall_as_its_wrapped_text(qtbot):
    """The banner took the label's height at its narrow hint width: the text wrapped into
    more lines than it has at the banner's width and left an empty band below it."""
    from PySide6.QtWidgets import QWidget

    from histoviewer.qt.annotation_autosave import AutosaveBanner

    parent = QWidget()
    parent.resize(1200, 300)
    qtbot.addWidget(parent)
    banner = AutosaveBanner(parent)
    parent.show()
    banner.place(220)
    banner.show_failure("/data/slides/patient_004_node_1.annotations.geojson: cannot write: "
                        "[Errno 28] No space left on device")
    qtbot.waitUntil(banner.isVisible)
    label = banner.text
    needed = label.heightForWidth(label.width())
    assert banner.width() == 720 and abs(label.height() - needed) <= 2
    margins = banner.layout().contentsMargins()
    assert banner.height() <= needed + margins.top() + margins.bottom() + 2
