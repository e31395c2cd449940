"""The status bar describes the slide in front and nothing else (issue 14, found by a new
user): the magnification kept the previous tab's value (963.9x shown on a slide viewed at
15.9x), and "Some tiles could not be read" stayed on every tab until the application quit,
even after the broken slide was closed."""

from __future__ import annotations

from pathlib import Path

from histoviewer.qt.view_controller import magnification_text
from tests.qt.conftest import open_settled

DATA = Path(__file__).resolve().parents[1] / "data"
WARNING = "Some tiles could not be read (outlined in red)"


def _expected_mag(tab) -> str:
    return f"{tab.session.info.base_magnification * tab.view.viewport.scale:.1f}x"


def test_magnification_follows_the_tab_in_front_whatever_the_other_views_do(
    window, qtbot
):
    a = open_settled(window, qtbot, DATA / "tiny.svs")
    b = open_settled(window, qtbot, DATA / "tiny-pyramid.tiff")
    labels = window.view_controls
    assert labels.mag_label.text() == magnification_text(b)
    window.tabs.setCurrentWidget(a)
    a.view.zoom_by(3.0)
    a_text = labels.mag_label.text()
    assert a_text == _expected_mag(a)
    window.tabs.setCurrentWidget(b)
    assert labels.mag_label.text() == magnification_text(b) != a_text
    # the hidden tab's view moves (a fly-to, a resize while hidden): the label stays b's
    a.view.zoom_by(2.0)
    a.view.fit()
    assert labels.mag_label.text() == magnification_text(b)
    window.close_tab(window.tabs.indexOf(b))
    assert window.current_tab() is a and labels.mag_label.text() == _expected_mag(a)


def test_the_tile_warning_belongs_to_the_broken_slide_and_leaves_with_it(window, qtbot):
    good = open_settled(window, qtbot, DATA / "tiny.svs")
    broken = window.open_slide(DATA / "broken-tiles.svs")
    assert broken is not None
    labels = window.view_controls
    with qtbot.waitSignal(broken.view.tileFailed, timeout=5000):
        broken.view.repaint()
    qtbot.waitUntil(lambda: labels.load_label.text() == WARNING)
    assert "broken-tiles.svs" in window.current_message()  # which tile, and why
    assert (
        broken.view.tile_failure
        and labels.load_label.toolTip() == broken.view.tile_failure
    )
    window.tabs.setCurrentWidget(good)
    assert (
        labels.load_label.text() == "" and good.view.tile_failure is None
    )  # the good slide is fine
    window.tabs.setCurrentWidget(broken)
    assert labels.load_label.text() == WARNING  # still true of the broken one
    window.close_tab(window.tabs.indexOf(broken))
    assert window.current_tab() is good and labels.load_label.text() == ""
    assert "broken-tiles.svs" not in window.current_message()  # nor its tile's message
    # a failure reported late by a tab that is not in front does not reach the label
    other = open_settled(window, qtbot, DATA / "tiny-pyramid.tiff")
    key = good.session.loader.key(0, 0, 0)
    good.view.on_tile_failed(key, "late failure")
    assert window.current_tab() is other and labels.load_label.text() == ""
    window.tabs.setCurrentWidget(good)
    assert (
        labels.load_label.text() == WARNING
        and labels.load_label.toolTip() == "late failure"
    )
