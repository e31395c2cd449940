"""How the viewer's idle pass reads: its reader threads keep reading while the model runs (a
budget of cells, not only of regions), and the live overlay's direct TIFF reads decode each tile
once per pass (a bounded tile cache, released when the worker goes idle)."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from histoviewer.core.colormaps import DEFAULT_COLORMAP, colormap_lut
from histoviewer.core.inference import live as live_module
from histoviewer.core.inference.grid import CellState
from histoviewer.core.inference.live import LiveHeatmap, LiveOptions
from histoviewer.core.inference.overlay import HeatmapStyle
from histoviewer.core.inference.prefetch import RegionPrefetcher
from histoviewer.core.inference.regions import RegionCutter, RegionJob
from histoviewer.core.inference.screening import (
    LiveScreen,
    run_screen,
)
from histoviewer.core.inference.tiff_regions import TILE_CACHE_BYTES, TiffRegionSource
from histoviewer.core.inference.worker import (
    InferenceWorker,
    WorkerCallbacks,
    WorkerSchedule,
)
from histoviewer.core.slide.open import open_slide
from tests.core.inference_helpers import (
    LesionFractionModel,
    run_until_idle,
    synthetic_rgb,
    write_fresh_cnn,
)
from tests.core.test_screening import SETTINGS, ScreenFraction, _setup, screened_pass

WAIT_S = 30.0


class CountingReads:
    """A read function that counts its calls and lets a test wait for a count."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self, job: RegionJob):
        with self._cond:
            self.count += 1
            self._cond.notify_all()
        return np.zeros((len(job), 2, 2, 3), np.uint8) + 128, 0.0, 0.0

    def wait_for(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, WAIT_S)


def one_cell_jobs(n: int, first: int = 0) -> list[RegionJob]:
    return [
        RegionJob(np.array([i], np.int64), 0, i, 0, i) for i in range(first, first + n)
    ]


def test_readers_read_ahead_up_to_the_cell_budget_while_the_consumer_is_busy():
    """Lone cells' regions: four regions ahead were four patches, and the readers stopped
    while the model ran a batch of 128. With a cell budget they read on up to it (and no
    further), and a dropped generation gives its cells back to the budget."""
    reads = CountingReads()
    prefetcher = RegionPrefetcher(reads, max_ahead=2, threads=2, max_cells_ahead=10)
    try:
        prefetcher.submit(1, one_cell_jobs(30))
        assert reads.wait_for(10), (
            f"the readers stopped after {reads.count} one-cell regions"
        )
        assert reads.count == 10  # the budget: nothing consumed yet, so no 11th read
        first = prefetcher.next(1, timeout=WAIT_S)
        assert first is not None and first.job.cells.tolist() in ([0], [1])
        assert reads.wait_for(11)  # one consumed: room for one more
        prefetcher.cancel()  # results and pending jobs of generation 1 dropped ...
        prefetcher.submit(2, one_cell_jobs(30, first=100))
        assert reads.wait_for(
            21
        )  # ... and their cells no longer count against the budget
        got = [prefetcher.next(2, timeout=WAIT_S) for _ in range(30)]
        assert sorted(int(r.job.cells[0]) for r in got) == list(range(100, 130))
    finally:
        prefetcher.close()
    assert prefetcher.alive_threads == 0


def test_without_a_cell_budget_the_readers_stop_at_max_ahead_regions():
    reads = CountingReads()
    prefetcher = RegionPrefetcher(reads, max_ahead=3, threads=2)
    try:
        prefetcher.submit(1, one_cell_jobs(30))
        assert reads.wait_for(3)
        assert reads.count == 3
        assert prefetcher.next(1, timeout=WAIT_S) is not None
        assert reads.wait_for(4) and reads.count == 4
    finally:
        prefetcher.close()


def test_results_come_out_in_job_order_whichever_reader_finishes_first():
    """The jobs are in priority order (a view's centre first); with two readers the second
    region may be read first, and it must not jump the queue."""
    second_done = threading.Event()

    def read(job: RegionJob):
        if int(job.cells[0]) == 0:
            assert second_done.wait(WAIT_S)  # the first region finishes last
        elif int(job.cells[0]) == 1:
            second_done.set()
        return np.zeros((len(job), 2, 2, 3), np.uint8) + 128, 0.0, 0.0

    prefetcher = RegionPrefetcher(read, max_ahead=4, threads=2)
    try:
        prefetcher.submit(1, one_cell_jobs(6))
        got = [prefetcher.next(1, timeout=WAIT_S) for _ in range(6)]
        assert [int(r.job.cells[0]) for r in got] == list(range(6))
        assert prefetcher.next(1, timeout=WAIT_S) is None  # no more work
    finally:
        prefetcher.close()


def test_a_submit_can_hold_its_jobs_to_one_reader_and_no_cell_budget():
    """The worker reads a view with one thread (right after a pan the viewer's own tile
    decoding needs the CPU) and the rest of the tissue with all: while one view region is
    being read no second read starts, and the next background submit uses both readers."""
    started = [threading.Event() for _ in range(4)]
    gate = threading.Event()

    def read(job: RegionJob):
        started[int(job.cells[0]) % 4].set()
        assert gate.wait(WAIT_S)
        return np.zeros((len(job), 2, 2, 3), np.uint8) + 128, 0.0, 0.0

    prefetcher = RegionPrefetcher(read, max_ahead=4, threads=2, max_cells_ahead=100)
    try:
        prefetcher.submit(1, one_cell_jobs(2), readers=1, max_cells_ahead=0)
        assert started[0].wait(WAIT_S)
        # a negative can only be shown by waiting: a second reader is idle and would start at once
        assert not started[1].wait(0.3), (
            "a second read of the view started while the first was held"
        )
        gate.set()
        assert [
            int(prefetcher.next(1, timeout=WAIT_S).job.cells[0]) for _ in range(2)
        ] == [0, 1]
        gate.clear()
        for e in started:
            e.clear()
        prefetcher.submit(
            2, one_cell_jobs(2, first=4)
        )  # the constructor's: both readers
        assert started[0].wait(WAIT_S) and started[1].wait(WAIT_S)  # both held at once
        gate.set()
        assert [
            int(prefetcher.next(2, timeout=WAIT_S).job.cells[0]) for _ in range(2)
        ] == [4, 5]
    finally:
        gate.set()
        prefetcher.close()


@pytest.fixture(scope="module")
def tiled_slide(tmp_path_factory):
    """A tiled JPEG TIFF at 1 um/px (read directly by ``TiffRegionSource``, no resampling
    level): 4,000 x 3,000 px in 256 px tiles, 16 x 12 = 192 tiles."""
    import tifffile

    path = tmp_path_factory.mktemp("tiled") / "tiled.tiff"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            synthetic_rgb(),
            tile=(256, 256),
            compression="jpeg",
            photometric="rgb",
            resolution=(1e4, 1e4),
            resolutionunit="CENTIMETER",
        )
    return path


def test_the_idle_pass_decodes_each_tile_once_and_releases_the_tiles_when_idle(
    tiled_slide, tmp_path, monkeypatch
):
    """Neighbouring regions share the tiles along their edges (and the screened pass's lone
    audit cells share tiles with each other): the live overlay kept no decoded tiles, so a
    pass decoded shared tiles again for every region (on the CAMELYON-size phantom 3,736
    decodes for ~1,300 tiles in the screened idle pass). The tiles are kept for the pass and
    given back when the worker goes idle. One reader thread here: two may both decode a tile
    they miss at the same moment (same pixels), which would make the count depend on timing."""
    def one_reader(*args, schedule: WorkerSchedule | None = None, **kwargs) -> InferenceWorker:
        # the overlay's own schedule (its model calls) with one reader; a partial's keyword
        # would be overridden by the schedule ``LiveHeatmap`` passes, leaving two readers
        schedule = replace(schedule or WorkerSchedule(), read_threads=1)
        return InferenceWorker(*args, schedule=schedule, **kwargs)

    monkeypatch.setattr(live_module, "InferenceWorker", one_reader)
    decoded: list[int] = []
    real_tile = TiffRegionSource._tile

    def counting_tile(self, page, index):
        decoded.append(int(index))
        return real_tile(self, page, index)

    monkeypatch.setattr(TiffRegionSource, "_tile", counting_tile)
    idle = threading.Event()
    held: list[int] = []  # the tile cache's bytes as results arrive
    holder: list[LiveHeatmap] = []

    def on_update(_window) -> None:
        held.append(holder[0]._fast._cache_bytes)

    options = LiveOptions(
        model=str(write_fresh_cnn(tmp_path)),
        device="cpu",
        background=False,
        use_cache=False,
        idle_strategy="exhaustive",
    )
    with open_slide(tiled_slide) as reader:
        live = LiveHeatmap(
            tiled_slide,
            reader,
            options,
            HeatmapStyle(colormap_lut(DEFAULT_COLORMAP)),
            on_update=on_update,
            on_idle=idle.set,
        )
        holder.append(live)
        try:
            assert live.wait_ready(60) and live._fast is not None, live.error
            assert live._worker._prefetcher.alive_threads == 1  # one reader: see the docstring
            assert live.wait_idle(60)  # nothing to do yet: background off, no view
            idle.clear()
            decoded.clear()  # the source's check at opening decoded one tile
            live.set_background(True)
            assert idle.wait(120) and live.coverage() == 1.0
            fast = live._fast
            twice = sorted({i for i in decoded if decoded.count(i) > 1})
            assert not twice, (
                f"{len(decoded)} decodes of {len(set(decoded))} tiles; again: {twice}"
            )
            assert max(held) > 0, "no decoded tile was kept for the pass"
            assert fast._cache_limit == TILE_CACHE_BYTES
            assert fast._cache_bytes == 0 and not fast._cache, (
                "the tiles were kept after the pass"
            )
        finally:
            live.close()


@pytest.fixture()
def wide(tmp_path):
    """The synthetic picture at 1 um/px, uncompressed (``test_screening``'s ``wide``)."""
    import tifffile

    path = tmp_path / "wide.tiff"
    tifffile.imwrite(
        path,
        synthetic_rgb(),
        photometric="rgb",
        resolution=(1e4, 1e4),
        resolutionunit="CENTIMETER",
    )
    return path


def test_the_screened_margin_joins_the_running_pass_and_classifies_what_rounds_did(
    wide, monkeypatch
):
    """The margin around what the full model finds (``screening.grow_cells``) is queued while
    the pass still runs, not as new rounds one after another (each began when the last batch
    of the one before was done: the model idle while its first regions were read, the readers
    idle during the last batch): one read plan for the whole screened pass. Growth is
    monotone, so the cells classified and screened negative are those of ``analyze``'s rounds
    (``screened_classify``) for the same screen, settings and lattice."""
    core_only = replace(
        SETTINGS, threshold=0.9
    )  # the screen flags the lesion's core: the margin finds its rim
    plans: list[int] = []
    real_submit = RegionPrefetcher.submit

    def recording_submit(self, generation, jobs, **kwargs):
        if self._threads[0].name.startswith("histoviewer-inference-reader"):
            plans.append(sum(len(j) for j in jobs))
        real_submit(self, generation, jobs, **kwargs)

    monkeypatch.setattr(RegionPrefetcher, "submit", recording_submit)
    with open_slide(wide) as reader:
        model = LesionFractionModel()
        expected, _ = _setup(reader, model)
        no_audit = np.zeros(
            expected.geometry.shape, bool
        )  # the lesion's rim on the lattice would be a miss
        screened = run_screen(
            reader, expected.geometry, expected.tissue, ScreenFraction()
        )
        _, record = screened_pass(expected, RegionCutter(reader, expected.geometry), model, screened, core_only,
                                  0.3, batch_size=16, block=4, audit=no_audit)
        grid, cutter = _setup(reader, model)
        screen = LiveScreen(
            reader, grid, ScreenFraction(), core_only, 0.3, audit=no_audit
        )
        run_until_idle(
            reader,
            model,
            grid,
            cutter=cutter,
            screen=screen,
            schedule=WorkerSchedule(max_batch_patches=16),
        )
    assert screen.finished and screen.fallback is None and record.fallback is None, (
        screen.fallback,
        record.fallback,
    )
    wanted = (screen._selected | screen._lattice) & grid.tissue
    computed = grid.state == CellState.COMPUTED
    assert np.count_nonzero(computed & ~wanted), (
        "the margin grew nothing: the test cannot tell rounds from one pass"
    )
    assert len(plans) == 1 and plans[0] == np.count_nonzero(wanted), (
        f"read plans of {plans} cells: rounds one after another"
    )
    assert np.array_equal(grid.state, expected.state)


class BlockingCache:
    """A heatmap cache whose ``save`` waits until the worker has said it is idle."""

    def __init__(self, idle: threading.Event) -> None:
        self.idle = idle
        self.saved_after_idle: list[bool] = []

    def save(self, grid) -> None:
        self.saved_after_idle.append(self.idle.wait(WAIT_S))


def test_the_worker_says_it_is_idle_before_it_writes_the_cache(wide):
    """The summary panel analyses the whole-slide map when the worker goes idle: writing the
    heatmap cache first made the label wait for the disk."""
    idle = threading.Event()
    with open_slide(wide) as reader:
        model = LesionFractionModel()
        grid, cutter = _setup(reader, model)
        cache = BlockingCache(idle)
        worker = InferenceWorker(
            reader,
            model,
            grid,
            background=True,
            cutter=cutter,
            cache=cache,
            callbacks=WorkerCallbacks(on_idle=idle.set),
        )
        try:
            assert idle.wait(WAIT_S) and grid.coverage() == 1.0
        finally:
            worker.close()
    assert cache.saved_after_idle and all(cache.saved_after_idle)
