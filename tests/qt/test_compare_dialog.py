"""AI > Compare with model (issue 17): the comparison runs off the GUI thread, paints over
the slide, toggles A - B / A / B, and lists the lesions where the models disagree."""

from __future__ import annotations

from histoviewer.qt import compare_dialog
from histoviewer.qt.compare_dialog import MODE_A, MODE_DIFFERENCE, CompareLayer
from histoviewer.qt.compare_legend import CompareLegend
from tests.core.inference_helpers import LesionFractionModel
from tests.core.test_compare import ScaledModel, write_synthetic_pyramid


def test_compare_with_a_miscalibrated_model_shows_the_difference_and_lists_its_missed_lesion(
    window, qtbot, tmp_path, monkeypatch
):
    slide = write_synthetic_pyramid(tmp_path / "slide.tiff")
    models = {"cnn": LesionFractionModel, "twin": lambda: ScaledModel(0.3)}
    monkeypatch.setattr(
        compare_dialog, "open_model", lambda spec, device="auto": models[spec]()
    )
    window.open_slide(slide)
    qtbot.waitUntil(lambda: window.current_tab() is not None)
    dialog = window.show_compare()
    qtbot.addWidget(dialog)
    dialog.start("twin")
    qtbot.waitUntil(
        lambda: dialog.result is not None or "did not finish" in dialog.status.text(),
        timeout=120_000,
    )
    assert dialog.result is not None, dialog.status.text()
    layers = [
        layer
        for layer in window.current_tab().view.layers
        if isinstance(layer, CompareLayer)
    ]
    assert layers == [dialog.layer] and dialog.layer.mode == MODE_DIFFERENCE
    assert "disagree" in dialog.status.text()
    assert dialog.table.rowCount() >= 1 and dialog.table.item(0, 0).text() == "A only"
    # the legend on the slide view itself: the diverging scale and both models by name
    view = window.current_tab().view
    legend = dialog.view_legend
    assert legend is not None and legend.parentWidget() is view and legend.isVisible()
    assert view.findChildren(CompareLegend) == [legend]
    text = "\n".join(legend.lines())
    assert "A \u2212 B" in text and "B higher" in text and "A higher" in text
    assert "A: fraction" in text and "B: fraction-x0.3" in text
    picture = legend.grab().toImage()
    row = 22 + 6  # the colour bar's middle row
    blue, red = picture.pixelColor(14, row), picture.pixelColor(265, row)
    assert (
        blue.blue() > blue.red() + 80 and red.red() > red.blue() + 80
    )  # -1 blue .. +1 red
    assert (
        legend.geometry().left() < view.width() / 2
    )  # clear of the heatmap legend (right)
    # toggle to A's map, then fly to the finding
    button = next(
        b for b in dialog.mode_group.buttons() if b.property("mode") == MODE_A
    )
    button.setChecked(True)
    assert dialog.layer.mode == MODE_A
    text = "\n".join(legend.lines())
    assert (
        "A alone" in text and "A (shown): fraction" in text and "B higher" not in text
    )
    x, y = dialog.result.findings[0].l0_centroid
    dialog._fly_to(0, 0)
    viewport = window.current_tab().view.viewport
    assert abs(viewport.l0_cx - x) < 1 and abs(viewport.l0_cy - y) < 1
    dialog.close()
    assert dialog.view_legend is None and not legend.isVisible()
    assert not [
        layer
        for layer in window.current_tab().view.layers
        if isinstance(layer, CompareLayer)
    ]


def test_legend_says_when_b_is_not_drawn_and_follows_the_view(qtbot):
    from PySide6.QtWidgets import QWidget

    from histoviewer.qt.compare_dialog import MODE_B

    view = QWidget()
    qtbot.addWidget(view)
    view.resize(800, 600)
    legend = CompareLegend(view, "cnn-pcam", "cnn-pcam-ft", b_drawn=False)
    view.show()
    assert not legend.warning()  # A - B is drawn where both classified
    drawn = CompareLegend(view, "cnn-pcam", "cnn-pcam-ft")
    drawn.set_state(MODE_B, outlines=False)
    legend.set_state(MODE_B, outlines=False)
    assert "B (shown): cnn-pcam-ft" in legend.lines()
    assert "not drawn here" in legend.warning() and legend.warning() in legend.lines()
    assert (
        not drawn.warning() and legend.height() > drawn.height()
    )  # room for the warning
    assert legend.geometry().bottom() == 600 - 10 - 1 and legend.x() == 10
    view.resize(900, 700)  # bottom-left of the view, after a resize too
    assert legend.geometry().bottom() == 700 - 10 - 1
