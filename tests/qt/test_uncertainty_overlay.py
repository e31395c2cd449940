"""The uncertainty map as a user meets it: AI > Uncertainty map > Compute for the selected
annotation's area on a phantom, the job runs off the GUI thread with progress, the overlay and its legend appear
above the heatmap, U hides it, hovering tells the value; a region needs a selection."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PySide6.QtCore import QPoint, Qt

from histoviewer.core.annotations.shapes import Annotation, ShapeKind
from histoviewer.core.inference.grid import CellState
from histoviewer.core.inference.uncertainty_map import UNCERTAINTY_SHOWN_FROM
from histoviewer.qt.images import qimage_to_rgb
from tests.qt.conftest import open_settled

pytestmark = pytest.mark.qt


def _grab(view):
    view.repaint()
    return qimage_to_rgb(view.grab().toImage()).astype(np.int16)


def test_uncertainty_overlay_is_computed_for_a_region_and_drawn(
    ai_window_factory, qtbot, micro_phantom, tmp_path
):
    win = ai_window_factory()
    tab = open_settled(win, qtbot, micro_phantom.slide_path)
    qtbot.waitUntil(
        lambda: (
            tab.heatmap is not None
            and tab.heatmap.paintable
            and tab.heatmap.live.is_idle
            and tab.heatmap_coverage()[0] == 1.0
        ),
        timeout=60_000,
    )
    ctl = win.uncertainty
    assert win.ai.menu.actions()[-1].menu() is ctl.menu  # AI > Uncertainty map
    assert ctl.rect_for(tab, "view") == tuple(tab.view.viewport.l0_xywh)
    tab.minimap.hide()
    tab.legend.hide()
    tab.view.show_scale_bar = False
    # a region request without a selected annotation says what is missing; nothing starts
    assert (
        not ctl.compute("selected region")
        and "select an annotation" in win.current_message()
    )
    assert tab not in ctl.layers
    # a rectangle across the lesion's left border (about 3 x 3 patches)
    (lesion,) = micro_phantom.lesions
    poly = np.asarray(lesion.l0_polygon)
    x0 = float(poly[:, 0].min())
    y_mid = float(poly[np.argmin(poly[:, 0]), 1])
    rect = Annotation(
        ShapeKind.RECTANGLE, ((x0 - 500, y_mid - 500), (x0 + 500, y_mid + 500)), "Tumor"
    )
    tab.annotation_tools.select(tab.annotations.add(rect))
    with qtbot.waitSignal(ctl.progress_bar.valueChanged, timeout=60_000):
        assert ctl.compute("selected region")
        assert ctl.cancel_button.isVisibleTo(
            win
        )  # progress with a cancel button while it runs
    qtbot.waitUntil(lambda: ctl.last_outcome is not None, timeout=120_000)
    outcome = ctl.last_outcome
    assert outcome.status == "done" and 0 < outcome.patches <= 25, outcome
    assert not ctl.cancel_button.isVisibleTo(win)
    layer = ctl.layers[tab]
    layers = tab.view.layers
    assert (
        layers.index(layer) == layers.index(tab.heatmap) + 1
    )  # above the heatmap, below the rest
    g = layer.live.grid.geometry
    computed = np.flatnonzero(layer.live.grid.state.reshape(-1) == CellState.COMPUTED)
    assert set(computed) <= set(
        g.cells_in_rect(x0 - 500, y_mid - 500, 1000, 1000)
    )  # that region only
    # the lesion table: the lesion's uncertainty over its computed cells (part of it here)
    qtbot.waitUntil(
        lambda: (
            tab.lesions.snapshot is not None
            and tab.lesions.snapshot.result.lesions
            and tab.lesions.snapshot.result.lesions[0].tta_uncertainty_max is not None
        ),
        timeout=30_000,
    )
    first = tab.lesions.snapshot.result.lesions[0]
    assert 0 < first.tta_uncertainty_computed < 1 and first.tta_uncertainty_max > 0
    table = win.lesions.panel.model
    qtbot.waitUntil(
        lambda: table.rowCount() > 0 and table.data(table.index(0, 6)) != "-",
        timeout=10_000,
    )
    assert (
        table.data(table.index(0, 6))
        == f"{first.tta_uncertainty_mean:.2f}/{first.tta_uncertainty_max:.2f}"
    )
    legend = ctl.legends[tab]
    assert legend.isVisible() and "computed" in legend.status
    legend.hide()
    values, state = layer.live.grid.map()
    painted = (state == CellState.COMPUTED) & (values >= UNCERTAINTY_SHOWN_FROM)
    assert (
        painted.any() and (layer.live.raster.rgba[painted][:, 3] > 0).all()
    )  # the lesion border
    # not computed stays veiled (never clear, which would read as "the views agree")
    assert (layer.live.raster.rgba[state == CellState.NOT_COMPUTED][:, 3] > 0).all()
    with_map = _grab(tab.view)
    qtbot.keyClick(win, Qt.Key.Key_U, Qt.KeyboardModifier.ShiftModifier)  # hides it
    assert not layer.visible
    without = _grab(tab.view)
    assert (np.abs(with_map - without).sum(axis=-1) > 30).sum() > 200
    qtbot.keyClick(win, Qt.Key.Key_U, Qt.KeyboardModifier.ShiftModifier)
    assert layer.visible
    r, c = np.argwhere(painted)[0]
    sx, sy = tab.view.viewport.l0_to_screen(
        g.l0_origin_x + (c + 0.5) * g.l0_stride, g.l0_origin_y + (r + 0.5) * g.l0_stride
    )
    qtbot.mouseMove(tab.view, QPoint(int(sx), int(sy)))
    qtbot.waitUntil(
        lambda: ctl.hover_label.text().startswith("uncertainty 0."), timeout=5000
    )
    # exported like the heatmap: the map's values (a float32 map TIFF) with provenance
    result = ctl.export_to(tab, tmp_path / "unc.tiff")
    assert result is not None and result.kind == "uncertainty-raw"
    saved = tifffile.imread(tmp_path / "unc.tiff")
    np.testing.assert_array_equal(saved, layer.live.grid.encoded_map())
    assert (tmp_path / "unc.tiff.provenance.json").is_file()
    # the overlay restarting (another model or grid) drops the map it described
    tab.stop_heatmap()
    assert tab not in ctl.layers and layer not in tab.view.layers
