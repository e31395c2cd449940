"""Progress and cancellation for long exports, in a form a Qt worker thread can drive.

The GUI passes plain callables (no Qt here): ``progress(done, total)`` is called from the
exporting thread (emit a signal from it), and ``cancel`` is either a ``threading.Event`` or
a callable returning True to stop. A cancelled export raises ``ExportCancelled`` after
removing its partial file.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from histoviewer.core.errors import ExportCancelled

__all__ = ["CancelLike", "ExportControl", "ProgressCallback"]

ProgressCallback = Callable[[int, int], None]
CancelLike = Callable[[], bool] | threading.Event


@dataclass(frozen=True)
class ExportControl:
    """``progress(done, total)`` in work units (output tiles); ``cancel`` polled between tiles."""

    progress: ProgressCallback | None = None
    cancel: CancelLike | None = None

    def cancelled(self) -> bool:
        if self.cancel is None:
            return False
        if isinstance(self.cancel, threading.Event):
            return self.cancel.is_set()
        return bool(self.cancel())

    def check(self, what: str = "export") -> None:
        """Raise ``ExportCancelled`` when the caller asked to stop."""
        if self.cancelled():
            raise ExportCancelled(f"{what} cancelled")

    def report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(int(done), int(total))


NO_CONTROL = ExportControl()
