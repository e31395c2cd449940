"""A reader thread that reads regions ahead of the model, so decoding overlaps compute.

``RegionPrefetcher`` holds a list of ``RegionJob`` for one *generation* (one request).
Its threads read at most ``max_ahead`` finished regions ahead of the consumer, or more while
those hold fewer than ``max_cells_ahead`` cells (lone cells' regions are small: four of them
are a few patches, and the readers stopped while the model ran a batch). ``submit``
with a new generation replaces the list; regions read for an older generation are thrown
away (a read in flight finishes, it is not interrupted). ``pause`` stops new reads, so
the CPU goes to the viewer's tile decoding while the user pans.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from histoviewer.core.errors import HistoViewerError
from histoviewer.core.inference.blank import BLANK_REASON, blank_patches
from histoviewer.core.inference.regions import RegionJob

log = logging.getLogger(__name__)

__all__ = ["BLANK_REASON", "RegionPrefetcher", "RegionResult"]

ReadFn = Callable[[RegionJob], tuple[np.ndarray, float, float]]


@dataclass(frozen=True)
class RegionResult:
    """Patches of a job (or why it failed), with the time spent reading and resizing.
    ``blank``: which of the job's patches came back without content (``inference.blank``);
    those cells must be marked FAILED, not classified (``usable`` / ``blank_cells``)."""

    generation: int
    job: RegionJob
    patches: np.ndarray | None
    error: str | None
    read_s: float = 0.0
    resize_s: float = 0.0
    blank: np.ndarray | None = None

    def usable(self) -> tuple[np.ndarray, np.ndarray]:
        """(cells, patches) to classify: the readable, non-blank ones (empty when the read failed)."""
        if self.patches is None:
            return self.job.cells[:0], np.zeros((0, 0, 0, 3), np.uint8)
        if self.blank is None or not self.blank.any():
            return self.job.cells, self.patches
        keep = ~self.blank
        return self.job.cells[keep], self.patches[keep]

    def blank_cells(self) -> np.ndarray:
        """Cells whose patch came back blank (to be marked FAILED with ``BLANK_REASON``)."""
        if self.patches is None or self.blank is None:
            return self.job.cells[:0]
        return self.job.cells[self.blank]


class RegionPrefetcher:
    """``threads`` reader threads feeding one consumer; see the module docstring. Results
    come out in the order of the jobs (the priority order: a view's centre first), whichever
    reader finishes first."""

    def __init__(self, read: ReadFn, *, max_ahead: int = 2, threads: int = 1,
                 name: str = "histoviewer-region-reader", max_cells_ahead: int = 0) -> None:
        self._read = read
        self._max_ahead = max(1, max_ahead)
        self._max_cells_ahead = max(0, max_cells_ahead)
        self._cells_ahead = 0  # cells of the finished and in-flight regions
        self._threads_n = max(1, threads)
        # reads at once, and the cell budget, for the current jobs (``submit``)
        self._readers, self._cells_budget = self._threads_n, self._max_cells_ahead
        self._cond = threading.Condition()
        self._generation = 0
        self._jobs: collections.deque[RegionJob] = collections.deque()
        # finished results by their job's sequence number; ``_out`` is the next to hand out,
        # ``_seq`` the next a reader takes; ``_epoch`` changes with every submit and cancel, so
        # a read in flight from before is not handed out
        self._done: dict[int, RegionResult] = {}
        self._seq = self._out = self._epoch = 0
        self._in_flight = 0
        # reads in flight for the current jobs (``_epoch``): a read for superseded jobs finishes,
        # but must not hold a thread count back from them (a view waited ~0.1 s behind a
        # 256-cell region of the pass it interrupted)
        self._in_flight_current = 0
        self._paused = False
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(max(1, threads))
        ]
        for t in self._threads:
            t.start()

    def submit(self, generation: int, jobs: Sequence[RegionJob], *, readers: int | None = None,
               max_cells_ahead: int | None = None) -> None:
        """Replace the pending jobs with ``jobs`` for ``generation`` (older results dropped).
        ``readers``: at most this many of the threads read these jobs at once, and
        ``max_cells_ahead`` their cell budget (None: the constructor's)."""
        with self._cond:
            self._generation = generation
            self._restart()
            self._jobs = collections.deque(jobs)
            self._readers = self._threads_n if readers is None else max(1, min(readers, self._threads_n))
            self._cells_budget = self._max_cells_ahead if max_cells_ahead is None else max(0, max_cells_ahead)
            self._cond.notify_all()

    def extend(self, generation: int, jobs: Sequence[RegionJob], *, front: bool = False) -> None:
        """Add ``jobs`` to ``generation``'s pending jobs (nothing when it was superseded): after
        them, or with ``front`` before them (next to be read, in the given order)."""
        with self._cond:
            if generation == self._generation and not self._stopping:
                if front:
                    self._jobs.extendleft(reversed(jobs))
                else:
                    self._jobs.extend(jobs)
                self._cond.notify_all()

    def jobs_left(self) -> int:
        """Jobs no reader has started yet."""
        with self._cond:
            return len(self._jobs)

    def cancel(self) -> None:
        """Drop every pending job and finished result."""
        with self._cond:
            self._restart()
            self._cond.notify_all()

    def _restart(self) -> None:
        """Forget the pending jobs and finished results (the caller holds the lock)."""
        self._jobs.clear()
        self._cells_ahead -= sum(len(r.job) for r in self._done.values())
        self._done.clear()
        self._epoch += 1
        self._out = self._seq
        self._in_flight_current = 0

    def _room(self) -> bool:
        """Whether a reader may start the next job (the caller holds the lock): fewer than
        ``max_ahead`` regions ahead, or fewer than ``max_cells_ahead`` cells with it."""
        if self._in_flight_current >= self._readers or self._in_flight >= self._threads_n:
            return False
        ahead = len(self._done) + self._in_flight_current
        return ahead < self._max_ahead or self._cells_ahead + len(self._jobs[0]) <= self._cells_budget

    def set_paused(self, paused: bool) -> None:
        with self._cond:
            self._paused = paused
            self._cond.notify_all()

    def next(self, generation: int, timeout: float | None = None) -> RegionResult | None:
        """The next region of ``generation`` in job order, once read; None when it has no
        more work (or the generation was superseded, or on ``timeout``)."""
        with self._cond:
            def ready() -> bool:
                return (self._stopping or self._out in self._done or self._generation != generation
                        or (not self._jobs and self._in_flight_current == 0))
            if not self._cond.wait_for(ready, timeout):
                return None
            if self._out in self._done and self._generation == generation:
                result = self._done.pop(self._out)
                self._out += 1
                self._cells_ahead -= len(result.job)
                self._cond.notify_all()  # room for one more read ahead
                return result
            return None

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (self._jobs and not self._paused and self._room()))
                if self._stopping:
                    return
                job, generation, epoch, seq = self._jobs.popleft(), self._generation, self._epoch, self._seq
                self._seq += 1
                self._in_flight += 1
                self._in_flight_current += 1
                self._cells_ahead += len(job)
            try:
                patches, read_s, resize_s = self._read(job)
                # checked here, on the reader thread: every consumer gets it, the model's thread pays nothing
                result = RegionResult(generation, job, patches, None, read_s, resize_s, blank_patches(patches))
            except HistoViewerError as exc:
                result = RegionResult(generation, job, None, str(exc))
            except Exception as exc:  # noqa: BLE001 - one bad region must not stop the reader
                log.exception("region read failed")
                result = RegionResult(generation, job, None, f"{type(exc).__name__}: {exc}")
            with self._cond:
                self._in_flight -= 1
                if epoch == self._epoch:
                    self._in_flight_current -= 1
                if epoch == self._epoch and not self._stopping:
                    self._done[seq] = result
                else:
                    self._cells_ahead -= len(job)
                self._cond.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Stop and join the threads (a read in flight finishes first). Safe to call twice."""
        with self._cond:
            self._stopping = True
            self._restart()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    @property
    def alive_threads(self) -> int:
        return sum(t.is_alive() for t in self._threads)
