"""One progress and cancellation protocol for every long job: analysis, training, exports.

Core code takes a ``JobControl`` and never knows the front end: the CLI plugs tqdm bars into
``progress`` (``histoviewer.cli.progress.cli_control``), the GUI emits a queued signal from it
and sets a ``threading.Event`` to cancel. Cancellation is cooperative: long loops call
``control.check(what)`` between units of work, which raises ``Cancelled``; nothing is killed
and no front end raises from inside a progress callback to stop a job.

``progress(stage, done, total, detail)`` is called from the working thread, in work units of
the stage (patches, tiles, slides, epochs): ``stage`` is a short description that stays the
same for the whole stage ("Classifying patient_004_node_1", "Writing heatmap"); ``detail`` is
a changing note ("loss 0.31"), often empty.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from histoviewer.core.errors import Cancelled

__all__ = ["NO_CONTROL", "CancelLike", "Cancelled", "JobControl", "ProgressCallback", "Stage"]

ProgressCallback = Callable[[str, int, int, str], None]
CancelLike = Callable[[], bool] | threading.Event


@dataclass(frozen=True)
class JobControl:
    """What a long job reports to (``progress``) and polls for a stop request (``cancel``)."""

    progress: ProgressCallback | None = None
    cancel: CancelLike | None = None

    def cancelled(self) -> bool:
        if self.cancel is None:
            return False
        if isinstance(self.cancel, threading.Event):
            return self.cancel.is_set()
        return bool(self.cancel())

    def check(self, what: str = "job", error: type[Cancelled] = Cancelled) -> None:
        """Raise ``error`` (a ``Cancelled``; exports raise ``ExportCancelled``) when the caller
        asked to stop."""
        if self.cancelled():
            raise error(f"{what} cancelled")

    def report(self, stage: str, done: int, total: int, detail: str = "") -> None:
        if self.progress is not None:
            self.progress(stage, int(done), int(total), detail)

    def stage(self, description: str, total: int) -> Stage:
        """A counter for one stage of work (``with control.stage("Training", n) as s: s.update()``)."""
        return Stage(self, description, int(total))


@dataclass
class Stage:
    """Counts the work done in one stage and reports each step (tqdm-like ``update``)."""

    control: JobControl
    description: str
    total: int
    done: int = field(default=0)
    postfix: str = field(default="")

    def __post_init__(self) -> None:
        self.control.report(self.description, 0, self.total)

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        self.control.report(self.description, self.done, self.total, self.postfix)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        pass

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


NO_CONTROL = JobControl()
