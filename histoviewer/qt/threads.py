"""The one way results cross from worker threads to the GUI thread: ``@gui_thread``.

Decorate a QObject method that worker threads call (tile loaders, the AI overlay's workers,
the lesion analysis, the case analysis, exports): the call returns at once, and the method
runs later on the GUI thread, with the same arguments.

It is superqt's ``ensure_main_thread`` plus one guard. superqt hands each call to a
short-lived QObject of its own and keeps a strong reference to the receiver, so unlike a
queued signal (whose pending events die with their receiver) it would call into a receiver
whose C++ object was deleted meanwhile (a tab closed while a tile or a result was in
flight). Every hop needs that guard, so it lives here once: a call whose receiver is gone
is dropped. Receivers that stop before they are deleted (``close()``) also check their own
``_closed`` flag first thing, which drops results of work that outlived the stop.

Called on the GUI thread itself, the method runs at once (superqt's rule).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import shiboken6
from PySide6.QtCore import QObject
from superqt.utils import ensure_main_thread

Method = TypeVar("Method", bound=Callable[..., None])


def gui_thread(method: Method) -> Method:
    """Run this QObject method on the GUI thread (see the module); never blocks the caller,
    returns nothing, and does nothing once the object was deleted."""

    @wraps(method)
    def if_alive(receiver: QObject, *args: Any) -> None:
        if shiboken6.isValid(receiver):
            method(receiver, *args)

    return ensure_main_thread(if_alive)  # type: ignore[return-value]
