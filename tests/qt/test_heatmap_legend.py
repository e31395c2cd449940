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


def test_unavailable_ai_shows_why_and_no_colour_bar_or_threshold(legend, qtbot):
    """On a slide without a scale the AI cannot run: the legend said 'threshold 0.50,
    opacity 60 %' over a colour bar as if a map were shown. It says why, and nothing else."""
    def bar(w) -> int:  # viridis' blues and greens (the reason is in red)
        px = _pixels(w).astype(int)
        return int(((px[..., 1] - px[..., 0] > 40) | (px[..., 2] - px[..., 0] > 40)).sum())

    legend.set_text("cnn-pcam (cnn)", "")
    assert bar(legend) > 1000  # the colour bar
    with qtbot.waitSignal(legend.heightChanged):
        legend.set_text("AI overlay unavailable", "tiny-no-mpp.tiff: the slide does not state its scale",
                        alarm=True, available=False)
    assert not legend.available and legend.height() < LEGEND_SIZE[1]
    px = _pixels(legend).astype(int)
    red_text = int(((px[..., 0] > 150) & (px[..., 1] < 60) & (px[..., 2] < 60)).sum())
    # the reason in red, no bar (a few coloured fringe pixels of antialiased text at most)
    assert red_text > 20 and bar(legend) < 50
    legend.set_text("cnn-pcam (cnn)", "")  # available again: the bar is back
    assert legend.available and legend.height() == LEGEND_SIZE[1] and bar(legend) > 1000
