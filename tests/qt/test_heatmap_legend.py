"""The in-view legend states the model's caution in full (wrapped, never cut off) and draws an
unreliable-result line in red, apart from a caution's brown."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from histoviewer.core.colormaps import DEFAULT_COLORMAP, colormap_lut
from histoviewer.core.inference.overlay import HeatmapStyle
from histoviewer.qt.heatmap_legend import LEGEND_SIZE, HeatmapLegend

CAVEAT = ("research model trained on 6,656 real PatchCamelyon patches and 1,165 synthetic phantom "
          "patches; not validated for clinical use")


def _pixels(w: QWidget) -> np.ndarray:
    img = w.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    ptr = img.constBits()
    arr = np.frombuffer(ptr, np.uint8, img.sizeInBytes()).reshape(img.height(), img.bytesPerLine())
    return arr[:, : img.width() * 3].reshape(img.height(), img.width(), 3)


@pytest.fixture
def legend(qtbot):
    parent = QWidget()
    parent.resize(800, 600)
    qtbot.addWidget(parent)
    w = HeatmapLegend(parent)
    w.set_style(HeatmapStyle(colormap_lut(DEFAULT_COLORMAP), threshold=0.5))
    yield w  # the parent stays referenced until the test ends
    del parent


def test_a_long_caveat_wraps_and_the_legend_grows_to_hold_it(legend, qtbot):
    with qtbot.waitSignal(legend.heightChanged):
        legend.set_text("cnn-pcam (cnn)", CAVEAT)
    assert legend.height() >= LEGEND_SIZE[1] + 14  # two or more lines of caution
    assert legend._status_rect(CAVEAT).height() <= legend.height() - (LEGEND_SIZE[1] - 14)
    legend.set_text("cnn-pcam (cnn)", "short")
    assert legend.height() == LEGEND_SIZE[1]


def test_unreliable_is_red_and_a_caution_is_not(legend):
    def reds(alarm: bool) -> int:
        legend.set_text("cnn-pcam (cnn)", "AI result unreliable here: tissue unlike the model's training data",
                        alarm=alarm)
        px = _pixels(legend).astype(int)
        bottom = px[LEGEND_SIZE[1] - 30:]  # the status lines, below the colour bar
        return int(((bottom[..., 0] > 150) & (bottom[..., 1] < 60) & (bottom[..., 2] < 60)).sum())

    assert reds(alarm=True) > 20
    assert reds(alarm=False) == 0
