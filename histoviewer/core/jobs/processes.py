"""Slides in local worker processes (``analyze_slides(workers=N)``), crash- and cancel-safe.

A worker process that dies (native crash, out-of-memory kill) breaks its whole
``ProcessPoolExecutor``: every unfinished future then fails with ``BrokenProcessPool``,
including slides that never started. So that one slide's crash never loses the others,
each worker reports the slides it starts on a queue; when a pool breaks,

- the slides that had not started go back into the queue, for a fresh pool;
- the slides that were running (the crashed one among them) are rerun one at a time,
  each alone in a one-worker pool, where a crash names its slide for sure: that slide
  becomes a ``SlideFailure`` (its output folder, when this run created it, is removed).

Every break in an N-worker pool moves at least one slide to the one-at-a-time queue and
every break in a one-worker pool fails exactly one slide; a pool that breaks before any
slide started (workers that cannot start) is retried once, then the slides left fail.
So the run always ends.

Cancel (``control.cancel``) terminates the worker processes and joins them (no slide goes
on writing after ``Cancelled`` is raised, and the interpreter exits at once), then removes
the output folders that this run created for slides that did not finish. A folder that
existed before the run (an earlier run's outputs) is left as it is.
"""

from __future__ import annotations

import multiprocessing
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Any

from histoviewer.core.analysis.summary import SlideFailure, SlideOutcome
from histoviewer.core.atomic import clean_stale_partials
from histoviewer.core.errors import Cancelled
from histoviewer.core.inference.analyze import AnalyzeOptions
from histoviewer.core.jobs.slide_folders import analyze_slide_folder_job, slide_folders
from histoviewer.core.progress import JobControl

__all__ = ["CRASH_MESSAGE", "NO_START_MESSAGE", "SlideJob", "run_in_processes"]

CRASH_MESSAGE = "the worker process analysing this slide died (crash or out of memory)"
NO_START_MESSAGE = "the worker processes died before analysing this slide (they could not start)"
MAX_IDLE_BREAKS = 2  # pools in a row that may break before any slide starts
POLL_S = 0.2  # how often a cancel is looked for while workers run

# (slide path, the slide's output folder, options) -> summary or failure: analyze_slide_folder_job,
# or a test's fake
SlideJob = Callable[[str, str, AnalyzeOptions], SlideOutcome]
# (workers, started queue) -> a pool whose workers run _start_worker(queue) first
PoolFactory = Callable[[int, Any], Executor]

_started_queue: Any = None  # in a worker process: where it reports the slides it starts


def _start_worker(queue: Any) -> None:
    global _started_queue
    _started_queue = queue


def _run_slide(job: SlideJob, index: int, slide: str, out_dir: str, options: AnalyzeOptions) -> SlideOutcome:
    """In the worker: say which slide starts (a synchronous pipe write), then run it."""
    if _started_queue is not None:
        _started_queue.put(index)
    return job(slide, out_dir, options)


def spawn_pool(workers: int, started: Any) -> Executor:
    # spawn: safe with the threads torch and the reader start in this process
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(started,))


def _stop(pool: Executor, *, kill: bool) -> None:
    """Shut ``pool`` down; ``kill``: terminate its worker processes first and join them."""
    # ProcessPoolExecutor keeps its processes in _processes (no public handle before 3.14)
    procs = list((getattr(pool, "_processes", None) or {}).values())
    if kill:
        for proc in procs:
            proc.terminate()
    pool.shutdown(wait=not kill, cancel_futures=True)
    for proc in procs:
        proc.join()


class _ProcessRun:
    def __init__(self, slides: Sequence[Path], folders: Sequence[Path], options: AnalyzeOptions, workers: int,
                 control: JobControl, job: SlideJob, new_pool: PoolFactory) -> None:
        self.slides, self.folders, self.options = list(slides), [Path(f) for f in folders], options
        self.workers, self.control, self.job, self.new_pool = workers, control, job, new_pool
        self.results: dict[int, SlideOutcome] = {}
        self.main_queue: list[int] = list(range(len(self.slides)))  # to run in an N-worker pool
        self.alone_queue: list[int] = []  # running when a pool broke: to run one at a time
        self.pool: Executor | None = None
        self.pool_size = 0
        self.futures: dict[int, Future] = {}
        # the workers' "slide i starts" reports, read at every poll (a full pipe blocks workers)
        self.started = multiprocessing.get_context("spawn").SimpleQueue()
        self.started_in_pool: set[int] = set()
        self.idle_breaks = 0  # pools that broke with no slide running: bounded retries
        # folders this run may remove (on cancel, after a crash): those absent before it
        self.preexisting = {i for i, f in enumerate(self.folders) if f.exists()}

    def _open_pool(self) -> None:
        if self.alone_queue:
            batch, size = [self.alone_queue.pop(0)], 1
        else:
            batch, self.main_queue = self.main_queue, []
            size = min(self.workers, len(batch))
        self.pool, self.pool_size = self.new_pool(size, self.started), size
        self._read_started()  # left by an earlier pool: slides that finished there
        self.started_in_pool = set()
        self.futures = {}
        for i in batch:
            try:
                self.futures[i] = self.pool.submit(_run_slide, self.job, i, str(self.slides[i]),
                                                   str(self.folders[i]), self.options)
            except BrokenProcessPool as exc:  # broke while submitting: recovered as any break
                self.futures[i] = Future()
                self.futures[i].set_exception(exc)

    def _read_started(self) -> None:
        while not self.started.empty():
            self.started_in_pool.add(self.started.get())

    def _remove_created(self, index: int) -> None:
        if index not in self.preexisting:
            shutil.rmtree(self.folders[index], ignore_errors=True)
        # the temporary folder of a worker that was killed or died (its process is gone)
        clean_stale_partials(self.folders[index].parent)

    def _harvest(self) -> None:
        self._read_started()
        broken = False
        for i, future in list(self.futures.items()):
            if not future.done():
                continue
            exc = future.exception()
            if isinstance(exc, BrokenProcessPool):
                broken = True
                continue
            del self.futures[i]
            self.results[i] = future.result() if exc is None else SlideFailure(
                str(self.slides[i]), f"worker failed: {type(exc).__name__}: {exc}")
        if broken:
            self._recover()
        elif not self.futures and self.pool is not None:
            _stop(self.pool, kill=False)
            self.pool = None

    def _recover(self) -> None:
        if self.pool is not None:
            _stop(self.pool, kill=True)
            self.pool = None
        self._read_started()  # the workers are gone: every slide they started is in the pipe
        started = self.started_in_pool
        unfinished = sorted(self.futures)
        self.futures = {}
        running = [i for i in unfinished if i in started]
        self.main_queue += [i for i in unfinished if i not in started]
        if not running:  # died before any slide started (cannot start, killed from outside)
            self.idle_breaks += 1
            if self.idle_breaks >= MAX_IDLE_BREAKS:
                for i in self.main_queue + self.alone_queue:
                    self.results[i] = SlideFailure(str(self.slides[i]), NO_START_MESSAGE)
                self.main_queue, self.alone_queue = [], []
            return
        if self.pool_size == 1 or len(running) == 1:
            for i in running:  # alone in its pool: this slide crashed it
                self._remove_created(i)
                self.results[i] = SlideFailure(str(self.slides[i]), CRASH_MESSAGE)
        else:
            self.alone_queue += running
        self.main_queue.sort()

    def cancel(self) -> None:
        if self.pool is not None:
            _stop(self.pool, kill=True)
            self.pool = None
        for i in range(len(self.slides)):
            if i not in self.results:
                self._remove_created(i)
        raise Cancelled("analysis cancelled")  # not control.check: the request is not asked twice

    def wait_for(self, index: int) -> SlideOutcome:
        while index not in self.results:
            if self.control.cancelled():
                self.cancel()
            if self.pool is None:
                self._open_pool()
            wait(list(self.futures.values()), timeout=POLL_S, return_when=FIRST_COMPLETED)
            self._harvest()
        return self.results[index]

    def close(self) -> None:
        if self.pool is not None:
            _stop(self.pool, kill=True)
            self.pool = None
        self.started.close()


def run_in_processes(slides: Sequence[Path], folders: Sequence[Path] | Path, options: AnalyzeOptions, workers: int,
                     control: JobControl, on_started: Callable[[int, Path], None],
                     on_done: Callable[[int, SlideOutcome], None], *, job: SlideJob | None = None,
                     new_pool: PoolFactory | None = None, cpus: int = 1) -> list[SlideOutcome]:
    """The slides in up to ``workers`` processes; outcomes in input order, ``on_started`` /
    ``on_done`` called in input order as each result is collected. ``folders``: each slide's
    output folder (a single folder: ``jobs.slide_folders.slide_folders`` in it). ``job``: the
    per-slide function (default ``analyze_slide_folder_job``; must be importable by name: processes are
    spawned); ``new_pool``: the pool factory (default ``spawn_pool``). Raises ``Cancelled``."""
    n = min(workers, len(slides))
    options = replace(options, torch_threads=options.torch_threads or max(1, cpus // n))
    if isinstance(folders, (str, Path)):
        folders = [f.path for f in slide_folders(folders, slides)]
    run = _ProcessRun(slides, folders, options, workers, control, job or analyze_slide_folder_job,
                      new_pool or spawn_pool)
    results: list[SlideOutcome] = []
    try:
        for i, slide in enumerate(slides):
            on_started(i, slide)
            results.append(run.wait_for(i))
            on_done(i, results[-1])
    finally:
        run.close()
    return results
