"""Regression: PySide6 6.12.0 on Python 3.11 aborts the interpreter in paint loops.

There, void Qt calls (``QPainter.drawImage``/``drawPixmap``, ``QImage.fill``) drop a
reference to ``None`` and a few thousand paints end in "Fatal Python error:
none_dealloc". The loop runs in a subprocess so a crash fails this test instead of
killing the test session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import PySide6

from tests.qt.conftest import open_settled

PAINT_LOOP = textwrap.dedent(
    """
    import sys
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    target = QImage(256, 256, QImage.Format.Format_RGB32)
    tile = QImage(64, 64, QImage.Format.Format_RGB32)
    pixmap = QPixmap(64, 64)
    for i in range(5000):
        tile.fill(QColor(i % 256, 0, 0))
        pixmap.fill(QColor(0, i % 256, 0))
        painter = QPainter(target)
        painter.drawImage(QRectF(i % 192, 0, 64, 64), tile, QRectF(0, 0, 64, 64))
        painter.drawPixmap(0, i % 192, pixmap)
        painter.fillRect(0, 0, 8, 8, QColor(1, 2, 3))
        painter.end()
    print("painted", i + 1, "times; None refcount ok:", sys.getrefcount(None) > 0)
    """
)


def test_thousands_of_paints_do_not_crash_the_interpreter():
    result = subprocess.run(
        [sys.executable, "-c", PAINT_LOOP],
        capture_output=True, text=True, timeout=240,
        env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, (
        f"paint loop died (PySide6 {PySide6.__version__}, Python {sys.version.split()[0]}):\n{result.stderr[-2000:]}"
    )
    assert "painted 5000 times" in result.stdout


def test_installed_pyside6_is_not_the_crashing_release():
    if sys.version_info < (3, 12):
        assert PySide6.__version__ != "6.12.0", "PySide6 6.12.0 aborts paint loops on Python < 3.12"


def test_the_slide_view_survives_thousands_of_repaints(qtbot, cmu_small):
    from histoviewer.qt.main_window import MainWindow

    win = MainWindow(cache_mb=64)
    qtbot.addWidget(win)
    win.resize(800, 600)
    win.show()
    qtbot.waitExposed(win)
    tab = open_settled(win, qtbot, cmu_small)
    view = tab.view
    # With the AI overlay running: its raster is drawn on every frame too.
    qtbot.waitUntil(lambda: tab.heatmap is not None and tab.heatmap.paintable, timeout=60_000)
    qtbot.waitUntil(lambda: tab.heatmap.live.coverage() > 0.2, timeout=60_000)
    view.zoom_by(3.0)
    for i in range(2000):
        view.pan_by(7 if (i // 100) % 2 == 0 else -7, 3 if (i // 50) % 2 == 0 else -3)
        view.repaint()
        tab.minimap.repaint()
    assert view.last_plan is not None
    win.close()
