"""Classify a list of cells as fast as the machine allows (the headless path).

A reader thread (``RegionPrefetcher``) reads, resizes and cuts regions while this thread
runs the model on batches of at least ``batch_size`` patches gathered from several
regions. Failures mark cells FAILED and are reported; the run goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from histoviewer.core.inference.grid import PredictionGrid
from histoviewer.core.inference.prefetch import BLANK_REASON, RegionPrefetcher
from histoviewer.core.inference.regions import RegionCutter, plan_regions
from histoviewer.core.models.classifier import PatchClassifier
from histoviewer.core.progress import NO_CONTROL, JobControl

log = logging.getLogger(__name__)

__all__ = ["PipelineTimes", "classify_cells"]

FailureFn = Callable[[np.ndarray, str], None]


@dataclass
class PipelineTimes:
    """Seconds spent, summed over the run. ``read_s`` is reading + decoding in the reader
    thread(s), ``resize_s`` resampling and cutting there, ``model_s`` the model here,
    ``wait_s`` this thread waiting for regions; ``total_s`` is wall time."""

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
    model: PatchClassifier,
    cells: np.ndarray,
    *,
    batch_size: int = 512,
    block: int = 16,
    read_threads: int = 1,
    on_failure: FailureFn | None = None,
    control: JobControl = NO_CONTROL,
    stage: str = "Classifying patches",
) -> PipelineTimes:
    """Classify ``cells`` (flat indices) of ``grid``; returns where the time went.
    Progress: one ``control`` stage named ``stage``, counted in patches (classified or
    failed). ``control.check`` runs between regions: ``Cancelled`` leaves the grid
    part-filled and the reader threads closed."""
    counter = control.stage(stage, int(np.asarray(cells).size))
    times = PipelineTimes()
    t_start = time.perf_counter()
    jobs = plan_regions(grid.geometry, cells, block)
    prefetcher = RegionPrefetcher(cutter.read_timed, max_ahead=2 + read_threads, threads=read_threads,
                                  name="histoviewer-analyze-reader")
    pend_cells: list[np.ndarray] = []
    pend_patches: list[np.ndarray] = []
    n_pending = 0

    def fail(failed: np.ndarray, message: str) -> None:
        grid.set_failed(failed)
        times.failed += len(failed)
        if on_failure is not None:
            on_failure(failed, message)
        counter.update(len(failed))

    def flush() -> None:
        nonlocal n_pending
        if not n_pending:
            return
        batch_cells = np.concatenate(pend_cells)
        batch = pend_patches[0] if len(pend_patches) == 1 else np.concatenate(pend_patches)
        pend_cells.clear()
        pend_patches.clear()
        n_pending = 0
        t0 = time.perf_counter()
        try:
            # probability and domain distance (of the slide's judged sample) in one pass
            scores = model.classify(batch, domain_mask=grid.domain_sample.reshape(-1)[batch_cells])
        except Exception as exc:  # noqa: BLE001 - any model failure marks these cells only
            log.warning("model failed on %d patches: %s", len(batch_cells), exc)
            fail(batch_cells, f"model {model.info.name!r} failed: {type(exc).__name__}: {exc}")
            return
        finally:
            times.model_s += time.perf_counter() - t0
        grid.set_values(batch_cells, scores.probability, scores.domain_distance)
        times.patches += len(batch_cells)
        counter.update(len(batch_cells))

    try:
        prefetcher.submit(1, jobs)
        while True:
            control.check("analysis")
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
    finally:
        prefetcher.close()
    times.total_s = time.perf_counter() - t_start
    return times
