"""What a test may leave behind: no HistoViewer thread (the autouse check in conftest.py).

Every thread and thread pool the product starts is named ``histoviewer-...``
(``THREAD_PREFIX``), so ours are told apart from Qt's, torch's and pytest's. A test that
ends with one still running leaves a reader, a model or a file handle busy under the next
test: that is how a suite flakes under load. Threads that are winding down get a short grace
(a shared join deadline, Qt events processed meanwhile in case one waits for the GUI thread).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterable

THREAD_PREFIX = "histoviewer-"
# A closed worker finishes the batch or read in hand: milliseconds normally, a CNN batch or
# a slow read under load. Longer than that is a thread nobody stopped. (The check's own test
# shortens it through the environment.)
THREAD_GRACE_S = float(os.environ.get("HISTOVIEWER_LEAK_GRACE_S", "10"))


def histoviewer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


def _process_qt_events() -> None:
    """Let queued GUI-thread work run (only where the test already loaded Qt)."""
    qtcore = sys.modules.get("PySide6.QtCore")
    app = qtcore.QCoreApplication.instance() if qtcore is not None else None
    if app is not None:
        app.processEvents()


def join_threads(threads: Iterable[threading.Thread], grace_s: float | None = None) -> list[threading.Thread]:
    """Join ``threads`` against one deadline ``grace_s`` (default ``THREAD_GRACE_S``) away;
    return those still alive."""
    deadline = time.monotonic() + (THREAD_GRACE_S if grace_s is None else grace_s)
    alive = [t for t in threads if t.is_alive()]
    while alive and time.monotonic() < deadline:
        _process_qt_events()
        alive[0].join(min(0.05, max(0.0, deadline - time.monotonic())))
        alive = [t for t in alive if t.is_alive()]
    return alive


def describe_threads(threads: Iterable[threading.Thread]) -> str:
    return ", ".join(sorted(t.name for t in threads))
