"""The one way results cross from worker threads to the GUI thread: ``@gui_thread``.

Decorate a QObject method that worker threads call (tile loaders, the AI overlay's workers,
the lesion analysis, the case analysis, exports): the call returns at once, and the method
runs later on the GUI thread with the same arguments, in the order the calls were made.
Called on the GUI thread itself (the main thread, where the QApplication lives), it runs
at once. A call whose receiver was deleted
meanwhile (a tab closed while a tile or a result was in flight) is dropped; receivers that
stop before they are deleted (``close()``) also check their own ``_closed`` flag first
thing, which drops results of work that outlived the stop.

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

import threading
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal

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


def _the_dispatcher() -> _Dispatcher:
    global _dispatcher
    with _dispatcher_lock:
        if _dispatcher is None:
            dispatcher = _Dispatcher()
            app = QCoreApplication.instance()
            if app is not None and dispatcher.thread() != app.thread():
                dispatcher.moveToThread(app.thread())  # first used from a worker
            _dispatcher = dispatcher
        return _dispatcher


def gui_thread(method: Method) -> Method:
    """Run this QObject method on the GUI thread (see the module); never blocks the caller,
    returns nothing, and does nothing once the object was deleted."""

    @wraps(method)
    def hop(receiver: QObject, *args: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            if shiboken6.isValid(receiver):
                method(receiver, *args)
        else:
            _the_dispatcher().queued.emit((method, receiver, args))

    return hop  # type: ignore[return-value]
