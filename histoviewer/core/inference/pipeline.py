"""Classify a list of cells as fast as the machine allows (the headless path).

A reader thread (``RegionPrefetcher``) reads, resizes and cuts regions while this thread
gathers batches of at least ``batch_size`` patches from several regions and runs the model
on them, itself or (a CPU model, torch or onnxruntime: ``model_parallelism``) on a few model
threads of one intra-op thread each. The model may still be loading (``PendingModel``): the reader
starts at once. Failures mark cells FAILED and are reported; the run goes on.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from histoviewer.core.inference.grid import PredictionGrid
from histoviewer.core.inference.model_loading import PendingModel, loaded_model
from histoviewer.core.inference.prefetch import BLANK_REASON, RegionPrefetcher
from histoviewer.core.inference.regions import RegionCutter, plan_regions
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.models.model_threads import (
    MAX_MODEL_THREADS,
    model_parallelism,
    set_model_threads,
)
from histoviewer.core.progress import NO_CONTROL, JobControl

log = logging.getLogger(__name__)

__all__ = ["MAX_MODEL_THREADS", "PipelineTimes", "classify_cells", "model_parallelism"]

FailureFn = Callable[[np.ndarray, str], None]


@dataclass
class PipelineTimes:
    """Seconds spent, summed over the run. ``read_s`` is reading + decoding in the reader
    thread(s), ``resize_s`` resampling and cutting there, ``model_s`` the model (summed over
    the model threads, so above the wall time when they overlap), ``wait_s`` this thread
    waiting for regions, for a model still loading and for busy model threads; ``total_s``
    is wall time."""

    read_s: float = 0.0
    resize_s: float = 0.0
    model_s: float = 0.0
    wait_s: float = 0.0
    total_s: float = 0.0
    patches: int = 0
    failed: int = 0  # all failed patches, ``blank`` included
    blank: int = 0  # tissue patches that came back blank (``inference.blank``)
    regions: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def classify_cells(
    grid: PredictionGrid,
    cutter: RegionCutter,
    model: PatchClassifier | PendingModel,
    cells: np.ndarray,
    *,
    batch_size: int = 512,
    block: int = 16,
    read_threads: int = 1,
    model_threads: int | None = 1,
    max_ahead: int | None = None,
    on_failure: FailureFn | None = None,
    control: JobControl = NO_CONTROL,
    stage: str = "Classifying patches",
) -> PipelineTimes:
    """Classify ``cells`` (flat indices) of ``grid``; returns where the time went.
    Progress: one ``control`` stage named ``stage``, counted in patches (classified or
    failed). ``control.check`` runs between regions: ``Cancelled`` leaves the grid
    part-filled and the reader and model threads closed.

    ``model``: a classifier, or a ``PendingModel`` still loading (the reader starts at once
    and the first model call waits for it). ``model_threads``: threads calling the model at
    once (``model_parallelism``; None: chosen for the model, 1: this thread alone).
    ``max_ahead``: regions read ahead of the model (default ``2 + read_threads``; each holds
    at most ``block**2`` patches). Results are applied to ``grid`` on this thread."""
    counter = control.stage(stage, int(np.asarray(cells).size))
    times = PipelineTimes()
    t_start = time.perf_counter()
    jobs = plan_regions(grid.geometry, cells, block)
    prefetcher = RegionPrefetcher(cutter.read_timed, max_ahead=max_ahead or 2 + read_threads,
                                  threads=read_threads, name="histoviewer-analyze-reader")
    pend_cells: list[np.ndarray] = []
    pend_patches: list[np.ndarray] = []
    n_pending = 0
    pool: ThreadPoolExecutor | None = None
    in_flight: collections.deque[Future] = collections.deque()
    max_in_flight = 1

    def fail(failed: np.ndarray, message: str) -> None:
        grid.set_failed(failed)
        times.failed += len(failed)
        if on_failure is not None:
            on_failure(failed, message)
        counter.update(len(failed))

    def run_model(classifier: PatchClassifier, batch_cells: np.ndarray, batch: np.ndarray):
        t0 = time.perf_counter()
        try:
            # probability and domain distance (of the slide's judged sample) in one pass
            return batch_cells, classifier.classify(batch, domain_mask=grid.domain_sample.reshape(-1)[batch_cells]), \
                None, time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - any model failure marks these cells only
            return batch_cells, None, exc, time.perf_counter() - t0

    def apply(done) -> None:
        batch_cells, scores, exc, seconds = done
        times.model_s += seconds
        if exc is not None:
            log.warning("model failed on %d patches: %s", len(batch_cells), exc)
            fail(batch_cells, f"model {model.info.name!r} failed: {type(exc).__name__}: {exc}")
            return
        grid.set_values(batch_cells, scores.probability, scores.domain_distance)
        times.patches += len(batch_cells)
        counter.update(len(batch_cells))

    def classifier_and_pool() -> PatchClassifier:
        nonlocal pool, max_in_flight
        t0 = time.perf_counter()
        classifier = loaded_model(model)  # a model still loading: wait for it here
        times.wait_s += time.perf_counter() - t0
        if pool is None:
            threads, intra_op = model_parallelism(classifier, model_threads)
            if threads > 1:
                pool = ThreadPoolExecutor(
                    threads, thread_name_prefix="histoviewer-analyze-model",
                    initializer=set_model_threads if intra_op else None,
                    initargs=(intra_op,) if intra_op else ())
                max_in_flight = threads + 1  # one waiting batch per thread: no idle model thread
        return classifier

    def flush() -> None:
        nonlocal n_pending
        if not n_pending:
            return
        batch_cells = np.concatenate(pend_cells)
        batch = pend_patches[0] if len(pend_patches) == 1 else np.concatenate(pend_patches)
        pend_cells.clear()
        pend_patches.clear()
        n_pending = 0
        classifier = classifier_and_pool()
        if pool is None:
            apply(run_model(classifier, batch_cells, batch))
            return
        while len(in_flight) >= max_in_flight:
            t0 = time.perf_counter()
            done = in_flight.popleft().result()
            times.wait_s += time.perf_counter() - t0
            apply(done)
        in_flight.append(pool.submit(run_model, classifier, batch_cells, batch))

    def drain_finished() -> None:
        while in_flight and in_flight[0].done():
            apply(in_flight.popleft().result())

    try:
        prefetcher.submit(1, jobs)
        while True:
            control.check("analysis")
            drain_finished()
            t0 = time.perf_counter()
            result = prefetcher.next(1)
            times.wait_s += time.perf_counter() - t0
            if result is None:
                break
            times.regions += 1
            times.read_s += result.read_s
            times.resize_s += result.resize_s
            if result.patches is None:
                fail(result.job.cells, result.error or "read failed")
                continue
            blank = result.blank_cells()
            if blank.size:
                times.blank += len(blank)
                fail(blank, BLANK_REASON)
            ok_cells, ok_patches = result.usable()
            if not ok_cells.size:
                continue
            pend_cells.append(ok_cells)
            pend_patches.append(ok_patches)
            n_pending += len(ok_cells)
            if n_pending >= batch_size:
                flush()
        flush()
        while in_flight:
            control.check("analysis")
            t0 = time.perf_counter()
            done = in_flight.popleft().result()
            times.wait_s += time.perf_counter() - t0
            apply(done)
    finally:
        prefetcher.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    times.total_s = time.perf_counter() - t_start
    return times
