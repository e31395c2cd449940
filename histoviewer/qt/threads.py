"""The one way results cross from worker threads to the GUI thread: ``@gui_thread``.

Decorate a QObject method that worker threads call (tile loaders, the AI overlay's workers,
the lesion analysis, the case analysis, exports): the call returns at once, and the method
runs later on the GUI thread with the same arguments. Calls from worker threads run in the
order they were queued; a call made on the GUI thread itself runs at once (so it may come
before calls still queued). A call whose receiver was deleted meanwhile (a tab closed while
a tile or a result was in flight) is dropped; receivers that stop before they are deleted
(``close()``) also check their own ``_closed`` flag first thing, which drops results of work
that outlived the stop. With no QApplication (not yet made, or shut down while a daemon
worker still ran) there is no GUI thread to run on: the call is dropped and logged, never
raised into the worker.

Why not superqt's ``ensure_main_thread`` (the same decorator): for every call it creates a
QObject on the calling thread and hands it to the GUI thread, and the worker drops its last
reference to it after the GUI thread may already be running it, so the C++ object can be
deleted on the worker while in use on the GUI thread. The viewer hops hundreds of times a
second (one per decoded tile), and the tile tests crashed the interpreter (bus error in a
loader thread) within a few runs. It also keeps no watch on the receiver's lifetime. Here
one long-lived dispatcher on the GUI thread carries every call through a queued signal, the
mechanism the viewer always used, and the liveness check runs on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, Qt, QThread, Signal, SignalInstance

Method = TypeVar("Method", bound=Callable[..., None])


class _Dispatcher(QObject):
    """Lives on the GUI thread; runs the calls queued to it there."""

    queued = Signal(object)  # a call: (method, receiver, args)

    def __init__(self) -> None:
        super().__init__()
        self.queued.connect(self._run, Qt.ConnectionType.QueuedConnection)

    @staticmethod
    def _run(call: tuple[Callable[..., None], QObject, tuple[Any, ...]]) -> None:
        method, receiver, args = call
        if shiboken6.isValid(receiver):
            method(receiver, *args)


_dispatcher: _Dispatcher | None = None
_dispatcher_lock = threading.Lock()
log = logging.getLogger(__name__)


def _the_dispatcher() -> _Dispatcher | None:
    """The dispatcher on the running application's thread, made on first use (and made anew
    for a new application: the old one died with its application); None with no application."""
    global _dispatcher
    app = QCoreApplication.instance()
    if app is None:
        return None
    with _dispatcher_lock:
        if _dispatcher is None or not shiboken6.isValid(_dispatcher) or _dispatcher.thread() != app.thread():
            dispatcher = _Dispatcher()
            if dispatcher.thread() != app.thread():
                dispatcher.moveToThread(app.thread())  # first used from a worker
            _dispatcher = dispatcher
        return _dispatcher


def _on_gui_thread() -> bool:
    app = QCoreApplication.instance()
    if app is None:
        return threading.current_thread() is threading.main_thread()
    return QThread.currentThread() == app.thread()


def gui_thread(method: Method) -> Method:
    """Run this QObject method on the GUI thread (see the module); never blocks the caller,
    returns nothing, and does nothing once the object was deleted."""

    @wraps(method)
    def hop(receiver: QObject, *args: Any) -> None:
        if _on_gui_thread():
            if shiboken6.isValid(receiver):
                method(receiver, *args)
            return
        dispatcher = _the_dispatcher()
        if dispatcher is None:
            log.warning("%s dropped: no Qt application to run it on", method.__qualname__)
            return
        try:
            dispatcher.queued.emit((method, receiver, args))
        except RuntimeError:  # the application is being torn down under this worker
            log.warning("%s dropped: the Qt application is shutting down", method.__qualname__)

    return hop  # type: ignore[return-value]


class ThreadJob(QObject):
    """A job that runs ``_run`` once, on a daemon Python thread of its own named
    ``histoviewer-<job_name>``; subclasses declare their signals and emit them from that thread with
    ``_emit`` (they arrive on the GUI thread). ``cancel()`` sets the event ``_cancel`` the job
    passes to the core as its cancel flag."""

    job_name = "job"

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"histoviewer-{self.job_name}", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the job's thread ends (tests, closing); True when it did."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    @gui_thread
    def _emit(self, signal: SignalInstance, *args) -> None:
        """Any thread: emit ``signal`` (one of this object's) on the GUI thread."""
        signal.emit(*args)

    def _run(self) -> None:  # the job's thread
        raise NotImplementedError
