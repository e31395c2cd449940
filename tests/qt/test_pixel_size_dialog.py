"""A slide without a pixel size: the user states it (File > Set pixel size..., or the
button beside the unknown scale in the properties), within the one sanity range; it is
saved for the slide, the slide reopens with it, and the viewer marks it user-set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from histoviewer.core.analysis.lesions import LesionParams, MapFrame
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.slide.user_scale import UserScaleStore
from histoviewer.core.units import MPP_MAX, MPP_MIN
from histoviewer.qt.live_lesions import HISTOGRAM_BINS, LesionSnapshot
from histoviewer.qt.pixel_size_dialog import PixelSizeDialog
from histoviewer.qt.summary_panel import SummaryPanel

NO_MPP = Path(__file__).resolve().parents[1] / "data" / "tiny-no-mpp.svs"
WITH_MPP = Path(__file__).resolve().parents[1] / "data" / "tiny.svs"


def test_set_pixel_size_from_the_properties_reopens_the_slide_user_set(window, qtbot):
    tab = window.open_slide(NO_MPP)
    assert tab.session.info.mpp is None and window.pixel_size_action.isEnabled()
    assert "Set pixel size" in window.statusBar().currentMessage()
    props = window.show_properties()
    assert props.pixel_size_button.isVisible()
    props.pixel_size_button.click()
    dialog = window.findChildren(PixelSizeDialog)[-1]
    assert (dialog.spin.minimum(), dialog.spin.maximum()) == (
        MPP_MIN,
        MPP_MAX,
    )  # the one sanity range
    dialog.spin.setValue(0.5)
    assert dialog.ok_button.isEnabled() and "20x" in dialog.magnification.text()
    dialog._accept()
    qtbot.waitUntil(
        lambda: window.current_tab() is not None and window.current_tab() is not tab
    )
    info = window.current_tab().session.info
    assert info.mpp == 0.5 and info.mpp_source == "user"
    assert "user-set" in window.statusBar().currentMessage()
    assert UserScaleStore().get(NO_MPP, info.dimensions) == 0.5
    text, length = window.current_tab().view._scale_bar_text()
    assert "user-set" in text and length > 0
    props = window.show_properties()
    rows = {
        props.table.item(r, 0).text(): props.table.item(r, 1).text() for r in range(8)
    }
    assert rows["Microns per pixel"].endswith("(user-set)")


def test_a_slide_reopened_later_keeps_its_user_set_size_and_can_forget_it(
    window, qtbot
):
    UserScaleStore().set(NO_MPP, (64, 48), 0.25)
    tab = window.open_slide(NO_MPP)
    assert tab.session.info.mpp == 0.25 and tab.session.info.mpp_user_set
    dialog = window.set_pixel_size()
    assert dialog.spin.value() == 0.25
    dialog._forget()
    qtbot.waitUntil(lambda: window.current_tab() is not tab)
    assert window.current_tab().session.info.mpp is None


def test_a_slide_with_its_own_scale_is_not_offered_the_dialog(window):
    tab = window.open_slide(WITH_MPP)
    assert tab.session.info.mpp_source == "slide"
    assert not window.pixel_size_action.isEnabled() and window.set_pixel_size() is None


def test_the_lesion_panel_says_when_sizes_rest_on_a_user_set_pixel_size(qtbot):
    encoded = np.zeros((30, 30), np.float32)
    encoded[10:20, 10:20] = 0.9
    result = analyse_map(encoded, MapFrame.for_cells(10.0), LesionParams())
    snap = LesionSnapshot(result, (0,) * HISTOGRAM_BINS, "m", False, 0.0, 1)
    panel = SummaryPanel()
    qtbot.addWidget(panel)
    panel.show_snapshot(snap)
    assert "user-set" not in panel.largest_label.text()
    panel.show_snapshot(dataclasses.replace(snap, scale_user_set=True))
    assert panel.largest_label.text().endswith("sizes from a user-set pixel size")
