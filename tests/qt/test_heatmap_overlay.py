"""The AI overlay as a user meets it: open a phantom, the heatmap appears over the lesion,
the status bar says how much is classified, H hides it, hovering tells the probability."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from skimage.measure import points_in_poly

from histoviewer.core.inference.grid import CellState
from histoviewer.qt.images import qimage_to_rgb
from tests.qt.conftest import open_settled


@pytest.fixture
def phantom(micro_phantom):
    return micro_phantom


@pytest.fixture
def ai_window(ai_window_factory):
    return ai_window_factory()


def wait_heatmap(qtbot, tab, timeout=60_000):
    qtbot.waitUntil(lambda: tab.heatmap is not None and tab.heatmap.paintable, timeout=timeout)
    qtbot.waitUntil(lambda: tab.heatmap.live.is_idle and tab.heatmap_coverage()[0] == 1.0, timeout=timeout)


def grab(view):
    view.repaint()
    return qimage_to_rgb(view.grab().toImage()).astype(np.int16)


def test_heatmap_appears_over_the_lesion_and_only_there(ai_window, qtbot, phantom):
    tab = open_settled(ai_window, qtbot, phantom.slide_path)
    view = tab.view
    tab.minimap.hide()
    view.show_scale_bar = False
    wait_heatmap(qtbot, tab)
    live = tab.heatmap.live
    assert live.model.info.name == "cnn-pcam" and not live.model.info.demonstration
    assert tab.legend.isVisible() and tab.legend.status == live.model.info.caution  # the caveat, in full
    ai_window.ai.update_status()
    assert ai_window.ai.status_label.text() == "AI: whole slide classified"  # at fit the view is the slide

    (lesion,) = phantom.lesions
    g = live.grid.geometry
    values, state = live.grid.map()
    x, y = g.cell_l0_xy(np.arange(g.size))
    centres = np.column_stack([x + g.l0_stride / 2, y + g.l0_stride / 2])
    inside = points_in_poly(centres, np.asarray(lesion.l0_polygon)).reshape(g.shape)
    computed = state == CellState.COMPUTED
    assert np.mean(values[inside & computed] >= 0.5) > 0.9  # the lesion is found

    tab.legend.hide()
    with_map = grab(view)
    qtbot.keyClick(ai_window, Qt.Key.Key_H)  # the View's shortcut hides the heatmap
    assert not ai_window.ai.panel.settings.show and not tab.heatmap.visible
    without = grab(view)
    changed = np.abs(with_map - without).sum(axis=-1) > 30
    # every changed screen pixel lies within one patch of the lesion: the map is aligned
    ys, xs = np.nonzero(changed)
    l0 = np.array([view.viewport.screen_to_l0(sx + 0.5, sy + 0.5) for sx, sy in zip(xs[::7], ys[::7])])
    poly = np.asarray(lesion.l0_polygon)
    from scipy.spatial.distance import cdist

    far = ~points_in_poly(l0, poly) & (cdist(l0, poly).min(axis=1) > g.l0_patch)
    assert changed.sum() > 2000 and far.mean() < 0.01
    # and over the lesion's centre the colour changed
    sx, sy = view.viewport.l0_to_screen(*lesion.l0_centroid)
    assert changed[int(sy) - 2 : int(sy) + 3, int(sx) - 2 : int(sx) + 3].all()

    qtbot.keyClick(ai_window, Qt.Key.Key_H)
    assert tab.heatmap.visible
    qtbot.mouseMove(view, QPoint(int(sx), int(sy)))
    assert ai_window.ai.hover_label.text().startswith("P(tumour) 0.") or ai_window.ai.hover_label.text() == "P(tumour) 1.00"
    value = float(ai_window.ai.hover_label.text().split()[-1])
    assert value >= 0.5

    dialog = ai_window.show_export()  # File > Export...: the dialog for this slide's overlay
    assert dialog is not None and dialog.isVisible()
    dialog.close()


def test_reopening_shows_the_finished_map_at_once_and_panning_pauses_the_worker(ai_window, qtbot, phantom):
    tab = open_settled(ai_window, qtbot, phantom.slide_path)
    wait_heatmap(qtbot, tab)
    ai_window.close_tab(0)
    tab = open_settled(ai_window, qtbot, phantom.slide_path)
    qtbot.waitUntil(lambda: tab.heatmap is not None and tab.heatmap.paintable, timeout=60_000)
    live = tab.heatmap.live
    assert live.restored_from_cache and live.coverage(tab.view.viewport.l0_xywh) == 1.0

    view = tab.view
    view.zoom_by(8.0)  # input: the view is moving, the worker holds
    assert view.interacting and live._interactive
    qtbot.waitUntil(lambda: not view.interacting, timeout=2000)
    assert not live._interactive
    ai_window.ai.update_status()
    assert "classified" in ai_window.ai.status_label.text()


def test_switching_model_restarts_and_slides_without_scale_say_so(ai_window, qtbot, phantom, slides_dir):
    from dataclasses import replace

    tab = open_settled(ai_window, qtbot, phantom.slide_path)
    wait_heatmap(qtbot, tab)
    first = tab.heatmap
    ai_window.ai.panel.set_settings(replace(ai_window.ai.panel.settings, model="handcrafted"))
    assert tab.heatmap is not first
    wait_heatmap(qtbot, tab)
    assert tab.heatmap.live.model.info.kind == "handcrafted"
    ai_window.ai.panel.set_settings(replace(ai_window.ai.panel.settings, opacity=0.9, threshold=0.2))
    assert tab.heatmap.live.style.opacity == pytest.approx(0.9) and tab.heatmap is not first

    bad = open_settled(ai_window, qtbot, slides_dir / "tcga-cr-7395-01a-01-ts1-no-mpp.svs")
    qtbot.waitUntil(lambda: bad.heatmap_error is not None, timeout=30_000)
    ai_window.ai.update_status()
    assert ai_window.ai.status_label.text() == "AI overlay unavailable"
    assert "scale" in ai_window.ai.status_label.toolTip()
    ai_window.ai.panel.set_settings(replace(ai_window.ai.panel.settings, enabled=False))
    assert bad.heatmap is None and tab.heatmap is None


def test_ai_settings_round_trip_and_bad_files_give_defaults(tmp_path):
    from histoviewer.qt.ai_panel import AiSettings, load_ai_settings, save_ai_settings

    path = tmp_path / "ai.json"
    assert load_ai_settings(path) == AiSettings()
    chosen = AiSettings(model="handcrafted", device="cpu", stride_divisor=2, opacity=0.8, threshold=0.3,
                        show=False, background=False)
    save_ai_settings(chosen, path)
    assert load_ai_settings(path) == chosen
    path.write_text('{"opacity": 7, "threshold": "x", "model": 3, "stride_divisor": 5}')
    assert load_ai_settings(path) == AiSettings()
    path.write_text('{"opacity": 1, "threshold": 0.25}')
    # saved before operating points, a threshold other than the old default is the user's own
    assert load_ai_settings(path) == AiSettings(opacity=1.0, threshold=0.25, threshold_from_model=False)
    path.write_text("not json")
    assert load_ai_settings(path) == AiSettings()
    # hostile or careless files give the defaults too, never a traceback or a hang (issue 14)
    for text in ('{"opacity": ' + "[" * 100_000 + "]" * 100_000 + "}", '{"opacity": 1' + "0" * 5000 + "}"):
        path.write_text(text)
        assert load_ai_settings(path) == AiSettings()
    path.unlink()
    os.mkfifo(path)
    assert load_ai_settings(path) == AiSettings()


def test_rgb_view_of_a_tile_payload_equals_a_copy():
    from histoviewer.qt.images import qimage_rgb_view, qimage_to_rgb, rgb_to_qimage

    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    image, _ = rgb_to_qimage(rgb)
    assert np.array_equal(qimage_rgb_view(image), rgb)
    assert np.array_equal(qimage_rgb_view(image), qimage_to_rgb(image))
