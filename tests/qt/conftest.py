"""Qt fixtures: main windows that are always closed, so no slide threads outlive a test,
and the check that no test leaves a QTimer of ours running."""

from __future__ import annotations

import sys
import time
import weakref
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QCoreApplication, QEvent, QThreadPool, QTimer  # noqa: E402

import histoviewer  # noqa: E402
from histoviewer.qt.ai_panel import AiSettings  # noqa: E402
from histoviewer.qt.main_window import MainWindow  # noqa: E402
from tests.leaks import THREAD_GRACE_S, describe_threads, histoviewer_threads, join_threads  # noqa: E402

_PRODUCT_DIR = str(Path(histoviewer.__file__).resolve().parent)
# A single-shot timer due within this long may still fire (a repaint or throttle timer
# started by the test's last event); one due later, or a repeating one, is a leak.
TIMER_GRACE_MS = 1000


def _product_caller(depth: int = 12) -> str | None:
    """``file:line`` of the nearest caller inside the histoviewer package, or None."""
    frame = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return None
        if frame.f_code.co_filename.startswith(_PRODUCT_DIR):
            return f"{Path(frame.f_code.co_filename).relative_to(Path(_PRODUCT_DIR).parent)}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def _active(timer: QTimer) -> bool:
    try:
        return timer.isActive()
    except RuntimeError:  # its C++ object is gone (its owner was deleted): not running
        return False


@pytest.fixture(autouse=True)
def _no_histoviewer_qtimer_outlives_its_test(monkeypatch):
    """Fail a test that leaves a QTimer started by HistoViewer code (or owned by one of its
    objects) running once its widgets are closed and deleted: a timer that fires into a
    closed window or a stopped slide is how the next test gets a stray paint or analysis.
    ``QTimer.start`` is wrapped for the test to record where each of our timers started."""
    started: weakref.WeakKeyDictionary[QTimer, str] = weakref.WeakKeyDictionary()
    base_start = QTimer.start

    def start(timer: QTimer, *args):
        where = _product_caller()
        if where is None:
            owner = timer.parent()
            if owner is not None and type(owner).__module__.startswith("histoviewer."):
                where = f"a timer of {type(owner).__name__}"
        if where is not None:
            started[timer] = where
        return base_start(timer, *args)

    monkeypatch.setattr(QTimer, "start", start)
    yield
    app = QCoreApplication.instance()
    deadline = time.monotonic() + TIMER_GRACE_MS / 1000
    while True:
        if app is not None:
            # pytest-qt closed the test's widgets and asked for their deletion: do it now,
            # so the timers they own stop with them
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
            app.processEvents()
        running = [(t, where) for t, where in list(started.items()) if _active(t)]
        due_soon = [t for t, _ in running if t.isSingleShot() and t.remainingTime() <= TIMER_GRACE_MS]
        if not running or len(due_soon) < len(running) or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    if running:
        for timer, _ in running:
            timer.stop()  # the next test must not get its timeout
        lines = [f"{where} (every {t.interval()} ms)" if not t.isSingleShot() else f"{where} (single shot)"
                 for t, where in running]
        pytest.fail("the test left QTimers running: " + "; ".join(lines), pytrace=False)


@pytest.fixture(autouse=True)
def _no_qthreadpool_work_outlives_its_test():
    """Fail a test that leaves work running on Qt's global thread pool (where superqt's
    ``thread_worker`` runs, on threads Python does not name): waited for with the same
    grace as our named threads."""
    yield
    pool = QThreadPool.globalInstance()
    if pool.activeThreadCount() and not pool.waitForDone(int(THREAD_GRACE_S * 1000)):
        pytest.fail(f"the test left {pool.activeThreadCount()} task(s) running on the global QThreadPool",
                    pytrace=False)


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


@pytest.fixture
def ai_window_factory(qtbot):
    """``make(**settings)`` -> a shown main window running the AI overlay with the default CNN
    on the CPU (``settings`` override ``AiSettings``). Teardown owns every window made, pass or fail: each is closed (its slides' tile loaders,
    inference workers and lesion analyses stop), then the threads they started are joined;
    one still alive fails the test here, naming the window's threads."""
    made: list[MainWindow] = []
    before = set(histoviewer_threads())

    def make(**settings) -> MainWindow:
        values = {"model": "cnn", "device": "cpu", "background": False, **settings}
        win = MainWindow(cache_mb=64, ai=AiSettings(**values))
        qtbot.addWidget(win)
        made.append(win)
        win.resize(1400, 900)
        win.show()
        qtbot.waitExposed(win)
        return win

    yield make
    for win in made:
        win.close()
    left = join_threads(t for t in histoviewer_threads() if t not in before)
    if left:
        pytest.fail(f"closing the AI window left threads running: {describe_threads(left)}", pytrace=False)


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
