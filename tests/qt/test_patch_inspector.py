"""The patch inspector as a user meets it: Ctrl+click the slide, the dock shows the patch the
AI read there (the overlay's own patch and P), why, how stable, and whether the tissue is like
the model's training tissue."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from skimage.measure import points_in_poly

from histoviewer.core.inference.grid import CellState
from histoviewer.qt.patch_inspector import InspectedPatchLayer
from tests.qt.conftest import open_settled


def ctrl_click(qtbot, view, l0_x, l0_y):
    sx, sy = view.viewport.l0_to_screen(l0_x, l0_y)
    qtbot.mouseClick(
        view,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.ControlModifier,
        QPoint(int(sx), int(sy)),
    )


def test_ctrl_click_in_a_lesion_fills_the_dock_with_the_overlays_own_patch(
    ai_window_factory, qtbot, micro_phantom
):
    win = ai_window_factory()
    tab = open_settled(win, qtbot, micro_phantom.slide_path)
    qtbot.waitUntil(
        lambda: tab.heatmap is not None and tab.heatmap.paintable, timeout=60_000
    )
    qtbot.waitUntil(
        lambda: tab.heatmap.live.is_idle and tab.heatmap_coverage()[0] == 1.0,
        timeout=60_000,
    )
    (lesion,) = micro_phantom.lesions
    cx, cy = np.asarray(lesion.l0_polygon).mean(axis=0)
    inspector = win.inspector
    with qtbot.waitSignal(inspector.filled, timeout=30_000) as blocker:
        ctrl_click(qtbot, tab.view, cx, cy)
    ins = blocker.args[0]
    panel = inspector.panel
    assert panel.isVisible() and panel.inspection is ins
    # the patch under the click, exactly as the overlay classified it: the same P as the map
    live = tab.heatmap.live
    g = live.grid.geometry
    x, y, w, h = ins.l0_rect
    assert x <= cx < x + w and y <= cy < y + h
    values, state = live.grid.map()
    assert state.reshape(-1)[ins.cell] == CellState.COMPUTED
    assert ins.map_probability == pytest.approx(
        float(values.reshape(-1)[ins.cell]), abs=2e-3
    )
    assert ins.probability == pytest.approx(ins.map_probability, abs=2e-3)
    assert ins.probability >= ins.threshold  # in the lesion
    assert ins.seen.shape == (g.patch_px, g.patch_px, 3)
    assert ins.cam is not None and ins.cam.cam.shape == (1, g.patch_px, g.patch_px)
    assert 0.0 <= float(ins.tta.uncertainty[0]) <= 0.5
    assert (
        ins.domain_distance is not None and ins.domain_limit is not None
    )  # the shipped CNN has a profile
    assert (
        not panel.patch_image.pixmap().isNull()
        and not panel.explain_image.pixmap().isNull()
    )
    assert "P(tumour)" in panel.facts.text() and "uncertainty" in panel.facts.text()
    assert "called tumour" in panel.facts.text()
    outlines = [
        layer for layer in tab.view.layers if isinstance(layer, InspectedPatchLayer)
    ]
    assert [o.l0_rect for o in outlines] == [
        ins.l0_rect
    ]  # the patch is outlined on the slide
    # the lesion's centre is tumour in the ground truth: most of the map's mass is inside it
    yy, xx = np.mgrid[0 : g.patch_px, 0 : g.patch_px]
    px = x + (xx + 0.5) * g.l0_per_model_px
    py = y + (yy + 0.5) * g.l0_per_model_px
    inside = points_in_poly(
        np.column_stack([px.ravel(), py.ravel()]), np.asarray(lesion.l0_polygon)
    )
    assert inside.mean() > 0.5


def test_the_handcrafted_model_shows_its_feature_terms_and_glass_is_flagged(
    ai_window_factory, qtbot, micro_phantom
):
    win = ai_window_factory(
        enabled=False, model="handcrafted"
    )  # no overlay: the inspector builds the grid
    tab = open_settled(win, qtbot, micro_phantom.slide_path)
    with qtbot.waitSignal(win.inspector.filled, timeout=30_000) as blocker:
        ctrl_click(qtbot, tab.view, 20, 20)  # the corner of the phantom: glass
    ins = blocker.args[0]
    assert ins.contributions is not None and ins.cam is None
    assert ins.map_probability is None
    assert not win.inspector.panel.bars_image.pixmap().isNull()
    assert "not computed" in win.inspector.panel.facts.text()
    assert sum(
        v for _, v in ins.contributions.groups()
    ) + ins.contributions.intercept == pytest.approx(ins.contributions.logit)
    assert any(
        "blank" in w or "unlike" in w for w in ins.warnings
    )  # glass is not what the model knows


def test_a_slide_without_scale_says_why_it_cannot_be_inspected(
    ai_window_factory, qtbot, slides_dir
):
    win = ai_window_factory(enabled=False)
    tab = open_settled(win, qtbot, slides_dir / "tcga-cr-7395-01a-01-ts1-no-mpp.svs")
    with qtbot.waitSignal(win.inspector.failed, timeout=30_000) as blocker:
        ctrl_click(qtbot, tab.view, 1000, 1000)
    assert "scale" in blocker.args[0]
    assert "Cannot inspect" in win.inspector.panel.status.text()
