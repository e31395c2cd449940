"""Where the viewer's idle pass spends its time (issue 15): batches of the rest of the tissue split
across the cores (a view's are not), the view known before the worker's first task, a read for a
superseded request holding nothing back, and the screened margin read while its seeds' tiles are
still decoded."""

from __future__ import annotations

import threading
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from histoviewer.core.inference import screening
from histoviewer.core.inference.grid import CellState
from histoviewer.core.inference.prefetch import RegionPrefetcher
from histoviewer.core.inference.regions import RegionCutter, RegionJob
from histoviewer.core.inference.screening import LiveScreen, run_screen
from histoviewer.core.inference.worker import (
    WorkerCallbacks,
    WorkerSchedule,
)
from histoviewer.core.slide.open import open_slide
from tests.core.inference_helpers import LesionFractionModel, run_until_idle
from tests.core.test_screening import (  # noqa: F401 - a fixture
    SETTINGS,
    ScreenFraction,
    _setup,
    screened_pass,
    wide,
)

WAIT_S = 30.0
MODEL_THREAD = "histoviewer-inference-model"


class ParallelFraction(LesionFractionModel):
    """The lesion-fraction fake as a CPU model that allows parallel calls (as onnxruntime's),
    recording each call's thread name and patch count. A call on one of the worker's model
    threads waits (up to ``WAIT_S``) for a second call to run at once: the fake is so fast that
    one pool thread would otherwise take every part of a batch."""

    parallel_calls = True
    device = SimpleNamespace(type="cpu")

    def __init__(self) -> None:
        super().__init__()
        self.record: list[tuple[str, int]] = []
        self.overlapped = threading.Event()
        self._running = 0
        self._gave_up = False

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        name = threading.current_thread().name
        with self.lock:
            self.record.append((name, len(patches)))
            self._running += 1
            if self._running >= 2:
                self.overlapped.set()
        try:
            if (
                name.startswith(MODEL_THREAD)
                and not self._gave_up
                and not self.overlapped.wait(WAIT_S)
            ):
                self._gave_up = True
            return super().predict_proba(patches)
        finally:
            with self.lock:
                self._running -= 1


class CellOrder:
    """``on_cells`` recording the order cells were classified in."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []

    def __call__(self, cells: np.ndarray, values: np.ndarray) -> None:
        if len(values):  # not the screened-negative marks (values empty)
            self.batches.append(np.asarray(cells, np.int64).copy())


def test_the_rest_is_split_across_the_model_threads_and_a_view_is_not(wide):  # noqa: F811 - the fixture
    """On 2 cores a batch of 128 patches took 287 ms on one thread and 128 ms in two calls
    (the CNN's tissue-check descriptor is most of it): the idle pass splits its batches across
    ``model_calls`` threads, each part at least ``MIN_CALL_PATCHES``. A view's batches stay one
    call on the worker's thread (the viewer decodes the same view's tiles then). The map is
    the one a single thread gives."""
    with open_slide(wide) as reader:
        model = ParallelFraction()
        grid, cutter = _setup(reader, model)
        view = grid.geometry.cell_rect(int(np.flatnonzero(grid.tissue.reshape(-1))[0]))
        order = CellOrder()
        run_until_idle(
            reader,
            model,
            grid,
            cutter=cutter,
            view=view,
            callbacks=WorkerCallbacks(on_cells=order),
            schedule=WorkerSchedule(model_calls=2, call_threads=1),
        )
        single, cutter1 = _setup(reader, LesionFractionModel())
        run_until_idle(
            reader,
            LesionFractionModel(),
            single,
            cutter=cutter1,
        )
    view_cells = set(grid.geometry.cells_in_rect(*view).tolist())
    assert set(order.batches[0].tolist()) <= view_cells  # the view first
    first_name, first_size = model.record[0]
    assert first_name == "histoviewer-inference-worker" and first_size == len(
        order.batches[0]
    )
    on_model_threads = [n for name, n in model.record if name.startswith(MODEL_THREAD)]
    assert on_model_threads, (
        f"no batch was split across the model threads: {model.record[:5]}"
    )
    assert model.overlapped.is_set() and min(on_model_threads) >= 16
    assert np.array_equal(grid.state, single.state)
    assert np.array_equal(grid.values, single.values)


def test_a_view_known_when_the_worker_starts_is_its_first_task(wide):  # noqa: F811 - the fixture
    """``LiveHeatmap`` hands the worker the view it was asked for before start-up ended: given
    after the thread started, the first task was the rest of the tissue, and the view's reader
    waited for one of its regions (0.2 s on a small node)."""
    with open_slide(wide) as reader:
        model = LesionFractionModel()
        grid, cutter = _setup(reader, model)
        tissue = np.flatnonzero(grid.tissue.reshape(-1))
        view = grid.geometry.cell_rect(int(tissue[len(tissue) // 2]))
        order = CellOrder()
        run_until_idle(
            reader,
            model,
            grid,
            cutter=cutter,
            view=view,
            callbacks=WorkerCallbacks(on_cells=order),
        )
    assert order.batches[0].tolist() == grid.geometry.cells_in_rect(*view).tolist()


def test_a_read_for_a_superseded_request_does_not_hold_back_the_new_one():
    """A view after a pan is read by one thread: a region still being read for the pass it
    interrupted counted against it, so the view waited for that read (up to 0.1 s for a
    256-cell region). The new request's read starts on the other thread at once."""
    release = threading.Event()
    started, finished = threading.Event(), threading.Event()

    def read(job: RegionJob):
        if (
            int(job.cells[0]) == 0
        ):  # the old request's region: held until the test is done
            started.set()
            release.wait(WAIT_S)
            finished.set()
        return np.zeros((len(job), 2, 2, 3), np.uint8) + 128, 0.0, 0.0

    prefetcher = RegionPrefetcher(read, max_ahead=2, threads=2)
    try:
        prefetcher.submit(1, [RegionJob(np.array([0], np.int64), 0, 1, 0, 1)])
        assert started.wait(WAIT_S)
        prefetcher.submit(
            2, [RegionJob(np.array([5], np.int64), 0, 1, 5, 6)], readers=1
        )
        result = prefetcher.next(2, timeout=WAIT_S)
        assert result is not None and result.job.cells.tolist() == [5]
        assert not finished.is_set(), (
            "the new request was read only after the old one's read ended"
        )
    finally:
        release.set()
        prefetcher.close()


def test_the_screened_margin_is_read_next_to_the_cells_it_grows_from(wide):  # noqa: F811 - the fixture
    """The margin around a batch's findings is queued at the front as soon as the batch is
    classified, not at the end of the pass (where the CAMELYON-size phantom decoded ~390
    level tiles a second time, evicted from the tile cache meanwhile). The cells classified
    and screened negative are still those of ``analyze``'s rounds."""
    core_only = replace(
        SETTINGS, threshold=0.9
    )  # the screen flags the lesion's core: the margin finds its rim
    with open_slide(wide) as reader:
        model = LesionFractionModel()
        expected, _ = _setup(reader, model)
        no_audit = np.zeros(expected.geometry.shape, bool)
        screened = run_screen(
            reader, expected.geometry, expected.tissue, ScreenFraction()
        )
        _, record = screened_pass(
            expected,
            RegionCutter(reader, expected.geometry),
            model,
            screened,
            core_only,
            0.3,
            batch_size=16,
            block=4,
            audit=no_audit,
        )
        grid, cutter = _setup(reader, model)
        screen = LiveScreen(
            reader, grid, ScreenFraction(), core_only, 0.3, audit=no_audit
        )
        order = CellOrder()
        run_until_idle(
            reader,
            model,
            grid,
            cutter=cutter,
            screen=screen,
            callbacks=WorkerCallbacks(on_cells=order),
            schedule=WorkerSchedule(max_batch_patches=16),
        )
    assert screen.finished and screen.fallback is None and record.fallback is None
    assert np.array_equal(grid.state, expected.state)
    wanted = ((screen._selected | screen._lattice) & grid.tissue).reshape(-1)
    done = np.concatenate(order.batches)
    is_margin = ~wanted[done]
    assert is_margin.any(), (
        "the margin grew nothing: the test cannot tell when it was read"
    )
    first_margin = int(np.argmax(is_margin))
    selection_after = int(np.count_nonzero(~is_margin[first_margin:]))
    # at the end of the pass, at most the last region or two of the selection remained
    assert selection_after > 2 * 16, (
        f"the margin was read after all but {selection_after} of the selection's cells"
    )
    assert (
        np.count_nonzero(grid.state == CellState.SCREENED_NEGATIVE)
        == record.screened_negative
        > 0
    )


class ParallelScreen(ScreenFraction):
    """The screen fake as a CPU model that allows parallel calls; each call waits (up to
    ``WAIT_S``) for a second to run at once, once."""

    parallel_calls = True
    device = SimpleNamespace(type="cpu")

    def __init__(self) -> None:
        super().__init__()
        self.overlapped = threading.Event()
        self._running = 0
        self._gave_up = False

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        with self.lock:
            self._running += 1
            if self._running >= 2:
                self.overlapped.set()
        try:
            if not self._gave_up and not self.overlapped.wait(WAIT_S):
                self._gave_up = True
            return super().predict_proba(patches)
        finally:
            with self.lock:
                self._running -= 1


def test_the_viewers_screen_pass_runs_on_the_threads_it_is_given(wide, monkeypatch):  # noqa: F811 - the fixture
    """The screen pass runs only while the user neither pans nor looks at unclassified tissue,
    so the viewer gives it the cores (``read_threads``, ``model_threads``): on 2 cores the
    CAMELYON-size phantom's pass took 1.24 s on one thread of each, 0.81 s on two. Its scores
    are those of one thread."""
    # this slide's 864 patches: regions of 64 cells, 7 model calls
    monkeypatch.setattr(screening, "SCREEN_BLOCK", 8)
    monkeypatch.setattr(LiveScreen, "screen_batch_patches", 128)
    with open_slide(wide) as reader:
        model = LesionFractionModel()
        grid, _ = _setup(reader, model)
        parallel = ParallelScreen()
        screen = LiveScreen(
            reader, grid, parallel, SETTINGS, 0.5, read_threads=2, model_threads=2
        )
        screen.run_screen()
        alone = LiveScreen(
            reader, _setup(reader, model)[0], ScreenFraction(), SETTINGS, 0.5
        )
        alone.run_screen()
    assert parallel.overlapped.is_set() and not parallel._gave_up, (
        "the screen's calls never ran at once"
    )
    assert np.array_equal(screen._selected, alone._selected)
    assert np.array_equal(screen._sgrid.values, alone._sgrid.values)
