"""Drawing and editing annotations with the mouse, as a user does (pytest-qt events).

Each tool is driven through the slide view's real mouse events and the result is checked
against ``view.viewport.screen_to_l0`` at the pixels clicked. The slide is a small phantom
(0.5 um/px) linked into each test's own folder, so autosaves stay there.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from histoviewer.core.annotations import Annotation, ShapeKind
from histoviewer.core.annotations.tools import Tool

from tests.qt.conftest import ANNOTATION_PHANTOM_MPP as MPP


def l0(view, p: QPoint) -> tuple[float, float]:
    return view.viewport.screen_to_l0(p.x(), p.y())


def drag(qtbot, view, points, button=Qt.MouseButton.LeftButton):
    qtbot.mousePress(view, button, pos=points[0])
    for p in points[1:]:
        qtbot.mouseMove(view, p)
    qtbot.mouseRelease(view, button, pos=points[-1])


def use(window, tool: Tool):
    window.annotation_actions.tool_actions[tool].trigger()


def test_tool_shortcuts_do_not_clash_with_the_viewer(window):
    keys = {a.shortcut().toString() for a in window.findChildren(type(window.annotation_actions.undo_action))
            if not a.shortcut().isEmpty() and a not in window.annotation_actions.tool_actions.values()}
    tool_keys = {a.shortcut().toString() for a in window.annotation_actions.tool_actions.values()}
    assert tool_keys == {"M", "R", "E", "P", "B", ".", "L"}
    assert not tool_keys & keys  # F (fit), O (overview), H (heatmap) keep their meaning


@pytest.mark.parametrize("tool, kind", [(Tool.RECTANGLE, ShapeKind.RECTANGLE), (Tool.ELLIPSE, ShapeKind.ELLIPSE),
                                        (Tool.RULER, ShapeKind.LINE)])
def test_drag_tools_draw_at_the_level0_position(window, qtbot, tab, tool, kind):
    view, doc = tab.view, tab.annotations
    use(window, tool)
    a, b = QPoint(300, 200), QPoint(420, 290)
    drag(qtbot, view, [a, QPoint(350, 240), b])
    assert len(doc) == 1
    ann = doc.annotations()[0]
    assert ann.kind is kind
    assert ann.l0_points[0] == pytest.approx(l0(view, a))
    assert ann.l0_points[1] == pytest.approx(l0(view, b))
    assert ann.class_name == (None if tool is Tool.RULER else "Tumor")
    assert tab.annotation_tools.selected == ann.uid and tab.annotation_tools.preview is None
    if tool is Tool.RULER:  # its length, in micrometres, in the panel
        dx, dy = (b.x() - a.x()) / view.viewport.scale, (b.y() - a.y()) / view.viewport.scale
        length_um = (dx * dx + dy * dy) ** 0.5 * MPP
        assert doc.measure(ann.uid).length_um == pytest.approx(length_um)
        assert "length" in window.annotation_actions.panel.measure_label.text()


def test_a_click_with_a_drag_tool_draws_nothing(window, qtbot, tab):
    use(window, Tool.RECTANGLE)
    qtbot.mouseClick(tab.view, Qt.MouseButton.LeftButton, pos=QPoint(300, 300))
    assert len(tab.annotations) == 0


def test_polygon_click_by_click_closed_by_double_click_or_enter(window, qtbot, tab):
    view, doc = tab.view, tab.annotations
    use(window, Tool.POLYGON)
    clicks = [QPoint(300, 200), QPoint(400, 210), QPoint(380, 320)]
    for p in clicks:
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=p)
    assert len(doc) == 0 and tab.annotation_tools.drawing  # still open
    last = QPoint(310, 300)
    # A real double-click: the first click adds the last vertex, the second closes.
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=last)
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=last)
    assert len(doc) == 1
    ann = doc.annotations()[0]
    assert ann.kind is ShapeKind.POLYGON
    np.testing.assert_allclose(ann.l0_points, [l0(view, p) for p in clicks + [last]])

    for p in clicks:  # the second one closes with Enter
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=p + QPoint(300, 0))
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert len(doc) == 2 and len(doc.annotations()[1].l0_points) == 3

    for p in clicks:  # Backspace drops the last vertex, Esc cancels
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=p + QPoint(0, 300))
    window.annotation_actions.delete()
    assert len(tab.annotation_tools.sketch) == 3  # two vertices + the rubber band
    qtbot.keyClick(view, Qt.Key.Key_Escape)
    assert len(doc) == 2 and not tab.annotation_tools.drawing
    qtbot.keyClick(view, Qt.Key.Key_Escape)  # a second Esc: back to the Move tool
    assert tab.annotation_tools.tool is Tool.SELECT
    assert window.annotation_actions.tool_actions[Tool.SELECT].isChecked()


def test_freehand_lasso(window, qtbot, tab):
    view, doc = tab.view, tab.annotations
    use(window, Tool.FREEHAND)
    stroke = [QPoint(300 + dx, 300 + dy) for dx, dy in
              [(0, 0), (40, -10), (80, 0), (100, 40), (80, 80), (40, 90), (0, 80), (-10, 40)]]
    drag(qtbot, view, stroke)
    assert len(doc) == 1
    ann = doc.annotations()[0]
    assert ann.kind is ShapeKind.FREEHAND
    x0, y0, x1, y1 = ann.l0_bounds()
    assert (x0, y0) == pytest.approx((l0(view, QPoint(290, 290))), abs=1 / view.viewport.scale)
    assert (x1, y1) == pytest.approx((l0(view, QPoint(400, 390))), abs=1 / view.viewport.scale)
    assert doc.measure(ann.uid).area_mm2 > 0


def test_points_tool_adds_to_the_selected_point_set(window, qtbot, tab):
    view, doc = tab.view, tab.annotations
    use(window, Tool.POINTS)
    for p in (QPoint(300, 300), QPoint(350, 320), QPoint(360, 400)):
        qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=p)
    assert len(doc) == 1
    ann = doc.annotations()[0]
    assert ann.kind is ShapeKind.POINTS and ann.l0_points[2] == pytest.approx(l0(view, QPoint(360, 400)))


def test_select_move_undo_redo(window, qtbot, tab):
    view, doc, tools = tab.view, tab.annotations, tab.annotation_tools
    a, b = l0(view, QPoint(300, 300)), l0(view, QPoint(400, 380))
    uid = doc.add(Annotation(ShapeKind.RECTANGLE, (a, b), class_name="Suspect"))
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(350, 340))
    assert tools.selected == uid
    steps = len(doc._undo)
    centre = view.viewport.l0_cx
    drag(qtbot, view, [QPoint(350, 340), QPoint(370, 350), QPoint(410, 380), QPoint(450, 400)])
    assert view.viewport.l0_cx == centre  # the view did not pan
    moved = doc.get(uid)
    per_px = 1 / view.viewport.scale
    assert moved.l0_points[0] == pytest.approx((a[0] + 100 * per_px, a[1] + 60 * per_px))
    assert len(doc._undo) == steps + 1  # the whole drag is one step
    assert window.annotation_actions.undo_action.text() == "&Undo Move"
    window.annotation_actions.undo_action.trigger()
    assert doc.get(uid).l0_points[0] == pytest.approx(a)
    window.annotation_actions.redo_action.trigger()
    assert doc.get(uid).l0_points[0] == pytest.approx(moved.l0_points[0])


def test_drag_a_corner_handle_resizes(window, qtbot, tab):
    view, doc, tools = tab.view, tab.annotations, tab.annotation_tools
    uid = doc.add(Annotation(ShapeKind.RECTANGLE, (l0(view, QPoint(300, 300)), l0(view, QPoint(400, 380)))))
    tools.select(uid)
    drag(qtbot, view, [QPoint(400, 380), QPoint(440, 400), QPoint(460, 420)])
    x0, y0, x1, y1 = doc.get(uid).box()
    assert (x0, y0) == pytest.approx(l0(view, QPoint(300, 300)))
    assert (x1, y1) == pytest.approx(l0(view, QPoint(460, 420)))
    assert doc.undo_text == "Move vertex"


def test_polygon_vertex_edit_insert_and_delete(window, qtbot, tab):
    view, doc, tools = tab.view, tab.annotations, tab.annotation_tools
    pts = [QPoint(300, 300), QPoint(500, 300), QPoint(400, 450)]
    uid = doc.add(Annotation(ShapeKind.POLYGON, tuple(l0(view, p) for p in pts)))
    tools.select(uid)
    drag(qtbot, view, [QPoint(400, 450), QPoint(400, 480), QPoint(400, 500)])
    assert doc.get(uid).l0_points[2] == pytest.approx(l0(view, QPoint(400, 500)))
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=QPoint(400, 300))  # on the top edge
    assert len(doc.get(uid).l0_points) == 4
    assert doc.get(uid).l0_points[1] == pytest.approx(l0(view, QPoint(400, 300)))
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.AltModifier, QPoint(400, 300))
    assert len(doc.get(uid).l0_points) == 3


def test_delete_key_and_undo(window, qtbot, tab):
    view, doc, tools = tab.view, tab.annotations, tab.annotation_tools
    uid = doc.add(Annotation(ShapeKind.ELLIPSE, (l0(view, QPoint(300, 300)), l0(view, QPoint(400, 380)))))
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=QPoint(350, 340))
    assert tools.selected == uid
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert len(doc) == 0 and tools.selected is None
    window.annotation_actions.undo()
    assert uid in doc


def test_panning_still_works(window, qtbot, tab):
    view = tab.view
    start = view.viewport.l0_cx
    drag(qtbot, view, [QPoint(500, 400), QPoint(450, 400), QPoint(400, 400)])  # empty space, Move tool
    assert view.viewport.l0_cx == pytest.approx(start + 100 / view.viewport.scale)
    use(window, Tool.RECTANGLE)
    start = view.viewport.l0_cx
    drag(qtbot, view, [QPoint(500, 400), QPoint(450, 400), QPoint(400, 400)], Qt.MouseButton.MiddleButton)
    assert view.viewport.l0_cx == pytest.approx(start + 100 / view.viewport.scale)
    qtbot.keyPress(view, Qt.Key.Key_Space)  # space held: a left drag pans too
    start = view.viewport.l0_cx
    drag(qtbot, view, [QPoint(500, 400), QPoint(450, 400), QPoint(400, 400)])
    qtbot.keyRelease(view, Qt.Key.Key_Space)
    assert view.viewport.l0_cx == pytest.approx(start + 100 / view.viewport.scale)
    assert len(tab.annotations) == 0


def test_context_menu_changes_class(window, qtbot, tab):
    view, doc, tools = tab.view, tab.annotations, tab.annotation_tools
    uid = doc.add(Annotation(ShapeKind.RECTANGLE, (l0(view, QPoint(300, 300)), l0(view, QPoint(400, 380))),
                             class_name="Other"))
    qtbot.mouseClick(view, Qt.MouseButton.RightButton, pos=QPoint(350, 340))
    menu = tools.context_menu
    assert menu is not None and tools.selected == uid
    classes = menu.actions()[0].menu()
    next(a for a in classes.actions() if a.text() == "Suspect").trigger()
    menu.close()
    assert doc.get(uid).class_name == "Suspect"


def test_paints_annotations_in_the_dirty_region_only(window, qtbot, tab):
    view, doc = tab.view, tab.annotations
    doc.add(Annotation(ShapeKind.RECTANGLE, (l0(view, QPoint(300, 300)), l0(view, QPoint(400, 380))),
                       class_name="Tumor"))
    doc.add(Annotation(ShapeKind.RECTANGLE, (l0(view, QPoint(700, 500)), l0(view, QPoint(760, 560)))))
    view.repaint()
    assert tab.annotation_layer.last_shapes_drawn == 2
    view.repaint(280, 280, 60, 60)
    assert tab.annotation_layer.last_shapes_drawn == 1
    image = view.grab().toImage()
    red = image.pixelColor(300, 340)  # the first rectangle's left edge, in Tumor red
    assert red.red() > 150 and red.green() < 80


def test_panning_works_after_a_context_menu_took_the_release(window, qtbot, tab):
    """A right-click menu (a popup) receives the mouse release, not the view: the next drag
    must still pan, and nothing may pan once the button is up."""
    from PySide6.QtWidgets import QApplication

    view, doc, tools = tab.view, tab.annotations, tab.annotation_tools
    doc.add(Annotation(ShapeKind.RECTANGLE, (l0(view, QPoint(300, 300)), l0(view, QPoint(400, 380))),
                       class_name="Other"))
    qtbot.mousePress(view, Qt.MouseButton.RightButton, pos=QPoint(350, 340))
    menu = tools.context_menu
    assert menu is not None
    qtbot.mouseRelease(menu, Qt.MouseButton.RightButton, pos=QPoint(1, 1))
    menu.close()
    QApplication.processEvents()
    start = view.viewport.l0_cx
    qtbot.mousePress(view, Qt.MouseButton.LeftButton, pos=QPoint(700, 600))
    qtbot.mouseMove(view, QPoint(650, 600))
    qtbot.mouseMove(view, QPoint(600, 600))
    qtbot.mouseRelease(view, Qt.MouseButton.LeftButton, pos=QPoint(600, 600))
    after_drag = view.viewport.l0_cx
    assert after_drag != start, "a left drag on empty space must pan"
    qtbot.mouseMove(view, QPoint(500, 500))  # no button held
    assert view.viewport.l0_cx == after_drag
