"""Inference engine: grid geometry, overlap averaging, tissue cells, region reads, the
worker (priority, supersession, pause, failures, close) and the disk cache."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from histoviewer.core.errors import Cancelled, InferenceError
from histoviewer.core.inference.disk_cache import HeatmapCache, slide_fingerprint
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import CellState, PredictionGrid
from histoviewer.core.inference.pipeline import classify_cells
from histoviewer.core.inference.regions import RegionCutter, choose_level, plan_regions
from histoviewer.core.inference.tissue import TISSUE_THRESHOLD, grid_tissue
from histoviewer.core.inference.worker import InferenceWorker, WorkerCallbacks, WorkerSchedule
from histoviewer.core.progress import JobControl
from histoviewer.core.slide import open_slide
from tests.core.inference_helpers import (
    GLASS_X1, H, LESION_RECT, MPP, W, FailingReader, LesionFractionModel, lesion_fraction,
    write_synthetic_tiff,
)
from tests.gates import GATE_LIMIT_S, Gate

PCAM_MPP, P = 0.972, 96


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    return write_synthetic_tiff(tmp_path_factory.mktemp("synthetic") / "synthetic.tiff")


@pytest.fixture
def reader(synthetic_path):
    with open_slide(synthetic_path) as r:
        yield r


def geometry(stride: int = P) -> GridGeometry:
    return GridGeometry.for_slide((W, H), MPP, PCAM_MPP, P, stride)


def all_cells_grid(g: GridGeometry) -> PredictionGrid:
    """No tissue mask: every cell is classified, except those whose patch lies less than a
    quarter inside the slide (as the real tissue rule does: outside counts as glass). Those
    (the bottom row here: 14 level-0 px of glass, the rest white fill) would read as blank
    patches, which a tissue cell must never be (``inference.blank``)."""
    x, y = g.cell_l0_xy(np.arange(g.size))
    inside = (np.clip(g.l0_width - x, 0, g.l0_patch) * np.clip(g.l0_height - y, 0, g.l0_patch)) / g.l0_patch**2
    return PredictionGrid(g, (inside >= TISSUE_THRESHOLD).reshape(g.shape))


# -- geometry ---------------------------------------------------------------------------------
def test_geometry_sizes_and_rects():
    g = geometry()
    assert g.l0_patch == pytest.approx(P * PCAM_MPP / MPP)
    assert g.cols == int(np.ceil(W / g.l0_patch)) and g.rows == int(np.ceil(H / g.l0_patch))
    cell = 2 * g.cols + 3
    x, y, w, h = g.cell_rect(cell)
    assert (x, y) == pytest.approx((3 * g.l0_stride, 2 * g.l0_stride)) and w == h == g.l0_patch
    assert g.cell_at(x + 1, y + 1) == cell
    assert g.cell_at(-1, 0) is None and g.cell_at(W + g.l0_patch, 0) is None
    assert GridGeometry.from_dict(g.to_dict()) == g


def test_cells_in_rect_are_exactly_the_intersecting_patches():
    g = geometry(stride=48)
    rect = (1000.0, 700.0, 900.0, 500.0)
    got = set(g.cells_in_rect(*rect).tolist())
    x, y = g.cell_l0_xy(np.arange(g.size))
    hit = (x < rect[0] + rect[2]) & (x + g.l0_patch > rect[0]) & (y < rect[1] + rect[3]) & (y + g.l0_patch > rect[1])
    assert got == set(np.flatnonzero(hit).tolist())


def test_order_by_distance_puts_the_centre_first():
    g = geometry()
    cells = g.cells_in_rect(0, 0, W, H)
    ordered = g.order_by_distance(cells, 2000, 1500)
    assert ordered[0] == g.cell_at(2000 - 1, 1500 - 1) or ordered[0] == g.cell_at(2000 + 1, 1500 + 1)
    x, y = g.cell_l0_xy(ordered)
    d = np.hypot(x + g.l0_patch / 2 - 2000, y + g.l0_patch / 2 - 1500)
    assert np.all(np.diff(d) >= -1e-9)


def test_bad_geometry_is_a_clear_error():
    with pytest.raises(InferenceError, match="scale"):
        GridGeometry.for_slide((W, H), None, PCAM_MPP, P)
    with pytest.raises(InferenceError, match="divide"):
        GridGeometry.for_slide((W, H), MPP, PCAM_MPP, P, 40)
    # slide_mpp is a float after construction: direct construction and JSON refuse None/NaN too
    with pytest.raises(InferenceError, match=r"scale .*unknown or invalid \(None\)"):
        GridGeometry(W, H, None, PCAM_MPP, P, P)  # type: ignore[arg-type]  # what mypy refuses, at run time
    with pytest.raises(InferenceError, match=r"unknown or invalid \(nan\)"):
        GridGeometry.from_dict({**geometry().to_dict(), "slide_mpp": float("nan")})
    g = GridGeometry.for_slide((W, H), 1, PCAM_MPP, P)
    assert type(g.slide_mpp) is float and g.slide_mpp == 1.0


def test_states_are_distinct_and_coverage_counts_tissue_only():
    g = geometry()
    tissue = np.zeros(g.shape, bool)
    tissue[:, : g.cols // 2] = True
    grid = PredictionGrid(g, tissue)
    assert grid.coverage() == 0.0
    pending = grid.pending()
    grid.set_values(pending[:3], np.zeros(3, np.float32))  # probability 0 is not "not computed"
    grid.set_failed(pending[3:4])
    enc = grid.encoded_map().reshape(-1)
    assert np.all(enc[pending[:3]] == 0.0) and enc[pending[3]] == -2.0
    assert np.isnan(enc[pending[4]]) and enc[g.cols - 1] == -1.0
    assert grid.coverage() == pytest.approx(4 / tissue.sum())
    assert grid.coverage_in_rect(0, 0, W, 1) == pytest.approx(4 / (g.cols // 2))  # first row


# -- region reads and alignment ----------------------------------------------------------------
def test_level_choice_reads_the_pcam_level(reader):
    assert choose_level(reader, geometry()) == 2  # 1.0 um/px for a 0.972 um/px model


def test_region_reads_match_single_patch_reads(reader):
    g = geometry()
    cutter = RegionCutter(reader, g)
    cells = g.cells_in_rect(1800, 600, 1500, 1500)
    (job,) = plan_regions(g, cells, block=16)
    patches = cutter(job)
    assert patches.shape == (len(cells), P, P, 3)
    for i, cell in enumerate(cells[:5]):
        (single,) = plan_regions(g, np.array([cell]), block=16)
        diff = np.abs(cutter(single).astype(int) - patches[i].astype(int))
        assert np.mean(diff) < 2.0  # same pixels up to resampling at the region edge


def test_classify_cells_reports_one_stage_through_job_control(reader):
    # The one progress protocol: a named stage counted in patches, failed ones included.
    g = geometry()
    grid = all_cells_grid(g)
    seen: list[tuple[str, int, int]] = []
    control = JobControl(progress=lambda stage, done, total, _d: seen.append((stage, done, total)))
    times = classify_cells(grid, RegionCutter(reader, g), LesionFractionModel(fail_on_calls=(1,)),
                           grid.pending(), batch_size=64, block=8, control=control, stage="Classifying x.tif")
    n = int(np.count_nonzero(grid.tissue))
    assert times.failed > 0 and times.patches + times.failed == n
    assert {s for s, _, _ in seen} == {"Classifying x.tif"} and seen[0] == ("Classifying x.tif", 0, n)
    assert seen[-1] == ("Classifying x.tif", n, n)
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)
    fresh = all_cells_grid(g)
    with pytest.raises(Cancelled, match="analysis cancelled"):
        classify_cells(fresh, RegionCutter(reader, g), LesionFractionModel(), fresh.pending(),
                       control=JobControl(cancel=lambda: True))
    assert fresh.coverage() == 0.0


@pytest.mark.parametrize("stride", [P, P // 2])
def test_position_dependent_model_proves_alignment(reader, stride):
    """The fake model measures how much of each patch is lesion; the map must agree with
    the exact geometric overlap to within a few model pixels (far less than one patch)."""
    g = geometry(stride)
    grid = all_cells_grid(g)
    times = classify_cells(grid, RegionCutter(reader, g), LesionFractionModel(), grid.pending(),
                           batch_size=64, block=8)
    tissue = grid.tissue
    assert times.patches == np.count_nonzero(tissue) and times.failed == 0
    x, y = g.cell_l0_xy(np.arange(g.size))
    expected_patch = lesion_fraction(x, y, g.l0_patch).reshape(g.shape)
    values, state = grid.snapshot()
    assert np.all(state[tissue] == CellState.COMPUTED)
    values = np.where(tissue, values, 0.0)  # the edge row (glass, never classified) as lesion-free
    # a shift of one model px changes a fraction by at most 1/96; allow ~3 px of blur
    assert np.max(np.abs(values - expected_patch)) < 0.035
    # the map: each map cell is the mean of the patches covering it
    k = g.overlap
    expected_map = np.zeros(g.shape)
    count = np.zeros(g.shape)
    for dr in range(k):
        for dc in range(k):
            expected_map[dr:, dc:] += expected_patch[: g.rows - dr, : g.cols - dc]
            count[dr:, dc:] += 1
    expected_map /= count
    map_values, map_state = grid.map()
    assert np.all(map_state[: -1 if k == 1 else None] == CellState.COMPUTED)  # the edge row: glass
    map_values = np.where(map_state == CellState.COMPUTED, map_values, 0.0)
    assert np.max(np.abs(map_values - expected_map)) < 0.035
    # and the map is centred on the lesion: its weighted centroid within one stride
    mx, my = g.cell_l0_xy(np.arange(g.size))
    w = map_values.reshape(-1)
    cx = np.sum(w * (mx + g.l0_stride / 2)) / w.sum()
    cy = np.sum(w * (my + g.l0_stride / 2)) / w.sum()
    lx, ly, lw, lh = LESION_RECT
    assert abs(cx - (lx + lw / 2)) < g.l0_stride and abs(cy - (ly + lh / 2)) < g.l0_stride


def test_overlap_map_averages_only_computed_patches():
    g = geometry(stride=48)
    grid = PredictionGrid(g)
    grid.set_values(np.array([0]), np.array([1.0], np.float32))
    grid.set_values(np.array([1]), np.array([0.0], np.float32))
    values, state = grid.map()
    assert values[0, 0] == 1.0 and values[0, 1] == pytest.approx(0.5) and values[0, 2] == 0.0
    assert state[0, 3] == CellState.NOT_COMPUTED


# -- tissue ------------------------------------------------------------------------------------
def test_tissue_cells_on_the_synthetic_slide(reader):
    g = geometry()
    tissue = grid_tissue(reader, g)
    x, y = g.cell_l0_xy(np.arange(g.size))
    x, y = x.reshape(g.shape), y.reshape(g.shape)
    assert not tissue[x + g.l0_patch < GLASS_X1].any()  # all-glass patches are background
    inside = (x > GLASS_X1) & (x + g.l0_patch < W) & (y + g.l0_patch < H)
    assert tissue[inside].all()
    # patches mostly off the slide's edge are not tissue either
    assert not tissue[y > H - g.l0_patch / 8].any()


# -- worker ------------------------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.cells: list[np.ndarray] = []
        self.failures: list[tuple[np.ndarray, str]] = []
        self.threads: set[str] = set()

    def on_cells(self, cells, values):
        self.threads.add(threading.current_thread().name)
        self.cells.append(cells.copy())

    def on_failure(self, cells, message):
        self.failures.append((cells.copy(), message))


def make_worker(reader, model, rec, g=None, schedule=WorkerSchedule(), **kw):
    g = g or geometry()
    grid = all_cells_grid(g)
    callbacks = WorkerCallbacks(on_cells=rec.on_cells, on_failure=rec.on_failure)
    return InferenceWorker(reader, model, grid, callbacks=callbacks, schedule=schedule, **kw), grid


def test_worker_classifies_the_view_centre_first_and_stops_cleanly(reader):
    rec = Recorder()
    worker, grid = make_worker(reader, LesionFractionModel(), rec)
    try:
        view = (1000.0, 500.0, 2500.0, 2000.0)
        worker.submit_view(view, (2750.0, 1450.0))
        assert worker.wait_idle(20)
        visible = grid.geometry.cells_in_rect(*view)
        assert grid.coverage(visible) == 1.0
        assert grid.coverage() < 1.0  # background is off: nothing else classified
        first = rec.cells[0][0]
        assert first == grid.geometry.order_by_distance(visible, 2750.0, 1450.0)[0]
        assert rec.threads == {"histoviewer-inference-worker"}
        worker.set_background(True)
        assert worker.wait_idle(20) and grid.coverage() == 1.0
    finally:
        worker.close()
    assert worker.alive_threads == 0


def test_new_view_supersedes_the_old_one(reader):
    rec = Recorder()
    g = geometry(stride=48)  # more cells, so the first view takes a while
    gate = Gate()
    # small batches, so that the first view is far from done when the second arrives
    worker, grid = make_worker(reader, LesionFractionModel(gate=gate), rec, g,
                               schedule=WorkerSchedule(view_block_cells=4, max_batch_patches=16))
    try:
        worker.submit_view((0.0, 0.0, float(W), float(H)))
        assert gate.wait_arrivals(1)  # the first batch is being classified
        second = (3000.0, 2000.0, 600.0, 600.0)
        worker.submit_view(second)
        gate.open()
        assert worker.wait_idle(GATE_LIMIT_S)
        assert grid.coverage(g.cells_in_rect(*second)) == 1.0
        computed = int(np.count_nonzero(grid.state == CellState.COMPUTED))
        assert computed < g.size / 2, "the first view's remaining cells should have been dropped"
    finally:
        gate.open()
        worker.close()
    assert worker.alive_threads == 0


def _histoviewer_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("histoviewer-")]


def test_close_while_busy_joins_every_thread(reader):
    assert _histoviewer_threads() == []
    gate = Gate(hold_s=0.2)  # each batch takes 0.2 s unless let through
    worker, _ = make_worker(reader, LesionFractionModel(gate=gate), Recorder(), background=True)
    try:
        worker.submit_view((0.0, 0.0, float(W), float(H)))
        assert gate.wait_arrivals(1)  # busy: a batch is in the model
        t0 = time.perf_counter()
        worker.close()  # the batch in hand finishes, nothing after it starts
        assert time.perf_counter() - t0 < 5
        assert worker.alive_threads == 0 and _histoviewer_threads() == []
    finally:
        gate.open()
        worker.close()


def test_interactive_mode_holds_work_until_the_pan_ends(reader):
    gate = Gate(held=False)  # only counts the batches
    worker, grid = make_worker(reader, LesionFractionModel(gate=gate), Recorder())
    try:
        worker.set_interactive(True)
        worker.submit_view((2000.0, 800.0, 1000.0, 1000.0))
        assert not gate.wait_arrivals(1, timeout=0.3)  # (time for a wrong implementation to start one)
        assert worker.classified == 0
        worker.set_interactive(False)
        assert worker.wait_idle(GATE_LIMIT_S) and worker.classified > 0
    finally:
        worker.close()


def test_worker_survives_a_failing_model_batch(reader):
    rec = Recorder()
    worker, grid = make_worker(reader, LesionFractionModel(fail_on_calls=(1,)), rec,
                                 schedule=WorkerSchedule(view_block_cells=4))
    try:
        view = (1500.0, 0.0, 2500.0, 3000.0)
        worker.submit_view(view)
        assert worker.wait_idle(20)
        cells = grid.geometry.cells_in_rect(*view)
        states = grid.state.reshape(-1)[cells]
        assert np.count_nonzero(states == CellState.FAILED) == len(rec.failures[0][0]) > 0
        assert np.count_nonzero(states == CellState.COMPUTED) > 0  # later batches still ran
        assert "injected model failure" in rec.failures[0][1]
    finally:
        worker.close()


def test_worker_survives_a_failing_read(reader):
    rec = Recorder()
    g = geometry()
    bad = FailingReader(reader, fail_x=3000)
    grid = all_cells_grid(g)
    worker = InferenceWorker(bad, LesionFractionModel(), grid,
                             callbacks=WorkerCallbacks(on_cells=rec.on_cells, on_failure=rec.on_failure),
                             schedule=WorkerSchedule(view_block_cells=2))
    try:
        worker.submit_view((0.0, 0.0, float(W), float(H)))
        assert worker.wait_idle(20)
        x, _ = g.cell_l0_xy(np.arange(g.size))
        state = grid.state.reshape(-1)
        assert np.all(state[(x < 2000) & grid.tissue.reshape(-1)] == CellState.COMPUTED)
        assert np.any(state == CellState.FAILED)
        assert any("broken tile" in m for _, m in rec.failures)
        assert grid.coverage() == 1.0  # failed cells are done (and shown as failed), not pending
    finally:
        worker.close()


# -- disk cache --------------------------------------------------------------------------------
def test_cache_round_trip_restores_partial_grids(synthetic_path, tmp_path, reader):
    g = geometry()
    tissue = np.ones(g.shape, bool)
    tissue[0, 0] = False
    grid = PredictionGrid(g, tissue)
    grid.set_values(np.array([5, 6, 7]), np.array([0.1, 0.0, 0.9], np.float32))
    grid.set_failed(np.array([8]))
    cache = HeatmapCache.for_slide(synthetic_path, "a" * 64, g, folder=tmp_path)
    assert cache.save(grid) == cache.path and cache.path.is_file()
    fresh = PredictionGrid(g, tissue)
    assert cache.load(fresh)
    values, state = fresh.snapshot()
    assert state.reshape(-1)[[5, 6, 7]].tolist() == [CellState.COMPUTED] * 3
    assert values.reshape(-1)[[5, 6, 7]] == pytest.approx([0.1, 0.0, 0.9])
    assert state.reshape(-1)[8] == CellState.NOT_COMPUTED  # failures are retried
    assert state[0, 0] == CellState.BACKGROUND and state.reshape(-1)[9] == CellState.NOT_COMPUTED
    # another model, stride or slide never sees this entry
    assert HeatmapCache.for_slide(synthetic_path, "b" * 64, g, folder=tmp_path).path != cache.path
    assert HeatmapCache.for_slide(synthetic_path, "a" * 64, geometry(48), folder=tmp_path).path != cache.path


def test_corrupt_cache_files_are_ignored_with_a_warning(synthetic_path, tmp_path, caplog):
    g = geometry()
    cache = HeatmapCache.for_slide(synthetic_path, "a" * 64, g, folder=tmp_path)
    grid = PredictionGrid(g)
    for junk in (b"", b"not a zip file", b"PK\x03\x04" + b"\0" * 50):
        cache.path.write_bytes(junk)
        with caplog.at_level(logging.WARNING):
            assert cache.load(grid) is False
        assert "damaged heatmap cache" in caplog.text
    # a valid npz for another geometry is refused too
    cache.save(PredictionGrid(g))
    other = HeatmapCache(cache.slide_fingerprint, "a" * 64, geometry(48), folder=tmp_path)
    other.path.write_bytes(cache.path.read_bytes())
    assert other.load(PredictionGrid(geometry(48))) is False


def test_worker_writes_the_cache_and_a_reopened_slide_needs_no_work(synthetic_path, reader, tmp_path):
    g = geometry()
    cache = HeatmapCache.for_slide(synthetic_path, "c" * 64, g, folder=tmp_path)
    grid = all_cells_grid(g)
    worker = InferenceWorker(reader, LesionFractionModel(), grid, cache=cache, background=True)
    worker.submit_view((0.0, 0.0, 500.0, 500.0))
    assert worker.wait_idle(20)
    worker.close()
    reopened = all_cells_grid(g)
    assert cache.load(reopened) and reopened.coverage() == 1.0
    model = LesionFractionModel()
    again = InferenceWorker(reader, model, reopened, background=True)
    again.submit_view((0.0, 0.0, float(W), float(H)))
    assert again.wait_idle(20)
    again.close()
    assert model.calls == 0


def test_slide_fingerprint_changes_with_the_file(tmp_path):
    p = tmp_path / "s.bin"
    p.write_bytes(b"x" * 1000)
    a = slide_fingerprint(p, (10, 10))
    p.write_bytes(b"y" * 1000)
    assert slide_fingerprint(p, (10, 10)) != a
    assert slide_fingerprint(p, (10, 11)) != slide_fingerprint(p, (10, 10))
