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
    win.ai.panel.hide()  # the viewer tests' geometry is the view's alone
    win.annotation_actions.panel.hide()  # (its dock shares the AI panel's place)
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


@pytest.fixture(scope="session")
def micro_phantom(tmp_path_factory):
    """A 1.5 x 1.5 mm phantom node (0.25 um/px) with one 0.7 mm micrometastasis."""
    from histoviewer.core.phantom import write_phantom

    return write_phantom(tmp_path_factory.mktemp("phantom") / "node.tiff", width=6000, height=6000,
                         mpp=0.25, lesions="micro:0.7", seed=5)


def make_ai_window(qtbot, **settings):
    """A shown main window running the AI overlay with the default CNN on the CPU (``settings``
    override ``AiSettings``); the caller closes it."""
    values = {"model": "cnn", "device": "cpu", "background": False, **settings}
    win = MainWindow(cache_mb=64, ai=AiSettings(**values))
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    return win


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


# -- annotation tests: a small phantom linked into each test's folder (its autosave goes there)
ANNOTATION_PHANTOM_MPP = 0.5


@pytest.fixture(scope="session")
def phantom_path(tmp_path_factory):
    """A small lesion-free phantom (0.5 um/px) for the annotation tests."""
    from histoviewer.core.phantom import write_phantom

    path = tmp_path_factory.mktemp("annot-phantom") / "node.tiff"
    write_phantom(path, width=3000, height=3000, mpp=ANNOTATION_PHANTOM_MPP, lesions="", seed=3)
    return path


@pytest.fixture
def slide(phantom_path, tmp_path):
    """The phantom, linked into this test's folder: its autosave is written beside it."""
    link = tmp_path / "node.tiff"
    link.symlink_to(phantom_path)
    return link


@pytest.fixture
def tab(window, qtbot, slide):
    tab = open_settled(window, qtbot, slide)
    tab.view.setFocus()
    return tab
