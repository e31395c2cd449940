"""Qt fixtures: a main window that is always closed, so no slide threads outlive a test."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from histoviewer.qt.ai_panel import AiSettings  # noqa: E402
from histoviewer.qt.main_window import MainWindow  # noqa: E402


@pytest.fixture
def window(qtbot):
    """The viewer without the AI overlay (viewer tests; ``ai_window`` runs the overlay)."""
    win = MainWindow(cache_mb=64, ai=AiSettings(enabled=False))
    win.ai_panel.hide()  # the viewer tests' geometry is the view's alone
    win.annotation_actions.panel.hide()  # (its dock shares the AI panel's place)
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def wait_complete(qtbot, view, timeout=10_000):
    """Repaint until the view has drawn every visible tile at its level."""
    def done():
        view.repaint()
        return view.last_plan is not None and view.last_plan.complete
    qtbot.waitUntil(done, timeout=timeout)


def open_settled(window, qtbot, path):
    """Open a slide and wait until its view has been laid out at the window's size."""
    tab = window.open_slide(path)
    assert tab is not None, window.last_error
    qtbot.waitUntil(lambda: tab.view.width() > 400 and tab.view.viewport.screen_w == tab.view.width(), timeout=5000)
    return tab
