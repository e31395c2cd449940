"""The leak checks themselves fail a test that leaves a HistoViewer thread, a QTimer or Qt
thread-pool work running (and pass a tidy one): a small test file run by pytest in a subprocess with our fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CONFTEST = """
from tests.conftest import _no_histoviewer_thread_outlives_its_test  # noqa: F401
from tests.qt.conftest import (  # noqa: F401
    _no_histoviewer_qtimer_outlives_its_test, _no_qthreadpool_work_outlives_its_test,
)
"""

PROBES = '''
import threading

from PySide6.QtCore import QRunnable, QThreadPool

from histoviewer.qt import live_lesions
from tests.qt.test_summary_panel import _FakeTab

stop = threading.Event()
kept = []


def test_leaves_a_thread():
    threading.Thread(target=stop.wait, args=(60,), name="histoviewer-probe", daemon=True).start()


def test_leaves_a_timer(qtbot):
    tracker = live_lesions.LiveLesions(_FakeTab(), throttle_ms=3_600_000)
    tracker._schedule(3_600_000)  # the throttle, armed and never stopped
    kept.append(tracker)


class Blocked(QRunnable):
    def run(self):
        stop.wait(60)


def test_leaves_pool_work(qtbot):
    kept.append(Blocked())
    QThreadPool.globalInstance().start(kept[-1])


def test_tidy(qtbot):
    stop.set()  # (lets the first probe's thread end)
    tracker = live_lesions.LiveLesions(_FakeTab(), throttle_ms=10)
    tracker._schedule(3_600_000)
    tracker.close()
    thread = threading.Thread(target=lambda: None, name="histoviewer-quick")
    thread.start()  # ends by itself: the grace covers it
'''


@pytest.mark.qt
def test_leaky_tests_fail_and_tidy_ones_pass(tmp_path):
    pytest.importorskip("PySide6")
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_probes.py").write_text(textwrap.dedent(PROBES))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "QT_QPA_PLATFORM": "offscreen", "HISTOVIEWER_LEAK_GRACE_S": "0.5"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--rootdir", str(tmp_path), "-o", "addopts=", str(tmp_path / "test_probes.py")],
                            capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    out = result.stdout + result.stderr
    assert "ERROR test_probes.py::test_leaves_a_thread" in out and "histoviewer-probe" in out, out
    assert "ERROR test_probes.py::test_leaves_a_timer" in out and "live_lesions.py" in out, out
    assert "ERROR test_probes.py::test_leaves_pool_work" in out and "QThreadPool" in out, out
    assert "4 passed, 3 errors" in out, out  # (a leaky test passes its call, fails its teardown)
