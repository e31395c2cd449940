"""``qt/threads.gui_thread`` at the edges of an application's life: hops from a worker
before the QApplication exists, and after it was shut down while a daemon worker still runs.
Each case runs in its own interpreter: a process has one QApplication at a time, and the
test's own belongs to pytest-qt."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

RECEIVER = """
import threading, time, gc
from PySide6.QtCore import QObject, QCoreApplication, QTimer
from histoviewer.qt import threads
from histoviewer.qt.threads import gui_thread

class Receiver(QObject):
    def __init__(self):
        super().__init__()
        self.got = []

    @gui_thread
    def hit(self, x):
        self.got.append((x, threading.current_thread() is threading.main_thread()))

def from_worker(fn):
    t = threading.Thread(target=fn)
    t.start()
    t.join()
"""


def _run(body: str) -> subprocess.CompletedProcess:
    code = RECEIVER + textwrap.dedent(body)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_a_hop_before_the_application_exists_is_dropped_and_later_hops_arrive():
    # The dispatcher made for a hop with no application used to stay on the worker's dead
    # thread, and every later hop was lost.
    result = _run("""
        r = Receiver()
        from_worker(lambda: r.hit(1))  # no application yet: dropped, with a warning
        app = QCoreApplication([])
        from_worker(lambda: r.hit(2))
        QTimer.singleShot(0, app.quit)
        app.exec()
        print("GOT", r.got)
    """)
    assert result.returncode == 0, result.stderr
    assert "GOT [(2, True)]" in result.stdout
    assert "dropped: no Qt application" in result.stderr


def test_hops_after_the_application_shut_down_are_dropped_not_raised_in_the_worker():
    result = _run("""
        app = QCoreApplication([])
        r = Receiver()
        from_worker(lambda: r.hit(1))
        QTimer.singleShot(0, app.quit)
        app.exec()
        app.shutdown()  # a daemon worker (a case analysis, an export) outlives the window
        del app
        gc.collect()
        errors = []
        def worker():
            r2 = Receiver()
            for _ in range(2000):
                try:
                    r2.hit(3)
                except Exception as exc:
                    errors.append(repr(exc))
                    return
        from_worker(worker)
        print("GOT", r.got, "ERRORS", errors)
    """)
    assert result.returncode == 0, result.stderr
    assert "GOT [(1, True)] ERRORS []" in result.stdout
