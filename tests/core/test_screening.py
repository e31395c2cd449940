"""The screened strategy (``inference.screening``): screen at 2.5x, the full model only where
tumour is possible, the rest SCREENED_NEGATIVE (not classified, counted apart)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from histoviewer.core.analysis.node_label import resolve_node_label, tissue_counts
from histoviewer.core.colormaps import DEFAULT_COLORMAP, colormap_lut
from histoviewer.core.errors import InferenceError, ModelLoadError
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import ENCODED, CellState, PredictionGrid
from histoviewer.core.inference.outputs import write_heatmap_png
from histoviewer.core.inference.overlay import (
    PENDING_RGBA,
    SCREENED_RGBA,
    HeatmapRaster,
    HeatmapStyle,
)
from histoviewer.core.inference.regions import RegionCutter
from histoviewer.core.inference.screening import (
    LiveScreen,
    dilate_8,
    run_screen,
    screen_geometry,
    screened_classify,
    select_for_full_model,
)
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.models.classifier import ModelInfo, OperatingPoint
from histoviewer.core.models.screen_model import (
    SCREEN_INPUT,
    ScreenSettings,
    mark_screening,
    screen_settings,
)
from histoviewer.core.progress import NO_CONTROL
from histoviewer.core.slide import open_slide
from histoviewer.core.staging_terms import NodeLabel
from tests.core.inference_helpers import (
    LESION_RECT,
    LesionFractionModel,
    lesion_fraction,
    write_synthetic_tiff,
)

SETTINGS = ScreenSettings(
    threshold=0.05,
    margin_patches=1,
    target="sensitivity >= 0.99",
    sensitivity=0.99,
    specificity=0.5,
    n_valid=100,
    data="validation",
)


class ScreenFraction(LesionFractionModel):
    """The lesion-fraction fake at the screen's scale (24 px at 3.888 um/px)."""

    def __init__(self, blank: bool = False) -> None:
        super().__init__()
        self.info = ModelInfo(
            name="screen-fraction",
            kind="fake",
            architecture="green-channel",
            input=SCREEN_INPUT,
            content_hash="s" * 64,
        )
        self.blank = blank

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        out = super().predict_proba(patches)
        return np.zeros_like(out) if self.blank else out


class Blank(LesionFractionModel):
    """A full model that finds nothing anywhere."""

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        return np.zeros(len(patches), np.float32)


@pytest.fixture()
def synthetic(tmp_path):
    return write_synthetic_tiff(tmp_path / "synthetic.tiff")


def _setup(reader, model, source=None):
    """(grid with the slide's tissue, cutter reading through ``source``) for ``model``."""
    spec = model.input
    info = reader.info
    geometry = GridGeometry.for_slide(
        info.dimensions, info.mpp, spec.mpp, spec.patch_px
    )
    grid = PredictionGrid(geometry, grid_tissue(reader, geometry))
    return grid, RegionCutter(reader, geometry, source=source)


def _lesion_cells(geometry: GridGeometry) -> np.ndarray:
    x, y = geometry.cell_l0_xy(np.arange(geometry.size))
    return np.flatnonzero(lesion_fraction(x, y, geometry.l0_patch) > 0)


def screened_pass(grid, cutter, model, screened, settings=SETTINGS, threshold=0.5, *, batch_size=64,
                  block=8, model_threads=1, audit=None):
    """``screened_classify`` as these tests run it (one reader, no failure callback, a stand-in
    screen record): its ``(times, ScreeningRecord)``."""
    return screened_classify(grid, cutter, model, screened, settings, threshold, batch_size=batch_size,
                             block=block, read_threads=1, model_threads=model_threads, on_failure=None,
                             control=NO_CONTROL, stage="test", screen_info={"name": "s", "content_hash": "s"},
                             screen_s=0.0, audit=audit)


def _run(reader, model, screen, audit):
    grid, cutter = _setup(reader, model)
    screened = run_screen(reader, grid.geometry, grid.tissue, screen)
    _, record = screened_pass(grid, cutter, model, screened, audit=audit)
    return grid, screened, record


def test_screen_geometry_is_the_full_grid_at_the_screens_scale(synthetic):
    with open_slide(synthetic) as reader:
        grid, _ = _setup(reader, LesionFractionModel())
        sgeo = screen_geometry(grid.geometry, ScreenFraction())
        assert sgeo.shape == grid.geometry.shape
        assert sgeo.patch_px == 24 and sgeo.l0_patch == pytest.approx(
            grid.geometry.l0_patch
        )
        np.testing.assert_allclose(
            sgeo.cell_l0_xy(np.arange(sgeo.size)),
            grid.geometry.cell_l0_xy(np.arange(sgeo.size)),
        )


def test_a_screen_with_another_field_is_refused(synthetic):
    with open_slide(synthetic) as reader:
        grid, _ = _setup(reader, LesionFractionModel())
        wrong = ScreenFraction()
        wrong.info = ModelInfo(
            name="w",
            kind="fake",
            architecture="x",
            input=type(SCREEN_INPUT)(patch_px=48, mpp=3.888),
        )
        with pytest.raises(ModelLoadError, match="same field"):
            screen_geometry(grid.geometry, wrong)


def test_screen_keeps_the_lesions_cells_in_the_full_pass(synthetic):
    with open_slide(synthetic) as reader:
        model = LesionFractionModel()
        grid, _, record = _run(
            reader, model, ScreenFraction(), audit=np.zeros((1, 1), bool)
        )
        lesion = _lesion_cells(grid.geometry)
        state = grid.state.reshape(-1)
        assert lesion.size > 0
        assert np.all(
            state[lesion] == CellState.COMPUTED
        )  # every lesion cell classified in full
        # and the margin: the 8-neighbours of every cell where the full model found P >= half
        # the lesion threshold (0.5 here), grown until none is left out
        found = (grid.state == CellState.COMPUTED) & (grid.values >= 0.25)
        assert found.any()
        around = dilate_8(found, 1)
        assert np.all(
            state[np.flatnonzero(around.reshape(-1) & grid.tissue.reshape(-1))]
            == CellState.COMPUTED
        )
        negatives = np.flatnonzero(state == CellState.SCREENED_NEGATIVE)
        assert negatives.size > 0 and record.screened_negative == negatives.size
        assert (
            record.fallback is None
            and record.full_model_patches
            == np.count_nonzero(state == CellState.COMPUTED)
        )
        # deterministic: the same slide screens to the same cells
        grid2, _, _ = _run(
            reader, model, ScreenFraction(), audit=np.zeros((1, 1), bool)
        )
        np.testing.assert_array_equal(grid.state, grid2.state)


def test_blank_screen_marks_cells_screened_negative_never_negative_classified(
    synthetic,
):
    with open_slide(synthetic) as reader:
        grid, _ = _setup(reader, Blank())
        audit = np.zeros(grid.geometry.shape, bool)
        audit[::3, ::3] = True
        grid, _, record = _run(reader, Blank(), ScreenFraction(blank=True), audit=audit)
        tissue = grid.tissue
        state = grid.state
        assert np.all(
            state[audit & tissue] == CellState.COMPUTED
        )  # only the audit lattice was classified
        rest = tissue & ~audit
        assert rest.any() and np.all(state[rest] == CellState.SCREENED_NEGATIVE)
        encoded = grid.encoded_map()
        assert np.all(
            encoded[rest] == ENCODED[CellState.SCREENED_NEGATIVE]
        )  # -3, not a probability of 0
        counts = tissue_counts(encoded)
        assert counts.classified == np.count_nonzero(audit & tissue)
        assert counts.screened == np.count_nonzero(rest)
        # coverage counts classified tissue only: screened-negative cells are not coverage
        assert grid.coverage() == pytest.approx(counts.classified / counts.tissue)
        assert counts.coverage < 1.0
        assert grid.screened_fraction() == pytest.approx(
            counts.screened / counts.tissue
        )
        assert record.screened_negative == counts.screened and record.flagged == 0


def test_an_audit_miss_classifies_the_whole_slide(synthetic):
    with open_slide(synthetic) as reader:
        model = LesionFractionModel()
        grid, _ = _setup(reader, model)
        audit = np.zeros(grid.geometry.shape, bool)
        audit.reshape(-1)[_lesion_cells(grid.geometry)] = (
            True  # the lattice falls on the lesion
        )
        grid, _, record = _run(reader, model, ScreenFraction(blank=True), audit=audit)
        assert record.audit_misses > 0 and record.fallback
        assert not np.any(grid.state == CellState.SCREENED_NEGATIVE)
        assert grid.coverage() == 1.0


def test_select_takes_flagged_and_unscored_tissue_and_the_margin_grows_from_findings():
    from histoviewer.core.inference.pipeline import PipelineTimes
    from histoviewer.core.inference.screening import ScreenPass, grow_cells

    prob = np.zeros((7, 7), np.float32)
    prob[3, 3] = 0.9
    prob[0, 6] = np.nan  # not scored (e.g. a failed read): never screened negative
    tissue = np.ones((7, 7), bool)
    sel = select_for_full_model(
        ScreenPass(prob, np.zeros((7, 7), bool), PipelineTimes()), tissue, SETTINGS
    )
    assert sel[3, 3] and sel[0, 6] and sel.sum() == 2
    geo = GridGeometry(
        l0_width=700,
        l0_height=700,
        slide_mpp=1.0,
        model_mpp=1.0,
        patch_px=100,
        stride_px=100,
    )
    grid = PredictionGrid(geo)
    grid.set_values(np.array([3 * 7 + 3, 6]), np.array([0.8, 0.1], np.float32))
    ring = grow_cells(
        grid, 0.25, 1
    )  # around the finding (0.8), not around the 0.1 cell
    assert sorted(ring) == sorted(
        r * 7 + c for r in (2, 3, 4) for c in (2, 3, 4) if (r, c) != (3, 3)
    )
    grid.set_values(ring, np.zeros(len(ring), np.float32))
    assert (
        grow_cells(grid, 0.25, 1).size == 0
    )  # nothing new found: the margin is complete


def test_label_of_a_fully_screened_node_is_stated_with_screened_cells_counted_apart():
    # 100 tissue: 30 classified, 70 screened negative: the label is final (nothing pending)
    res = resolve_node_label(
        NodeLabel.NEGATIVE, tissue=100, classified=30, failed=0, screened=70
    )
    assert res.resolved and res.label is NodeLabel.NEGATIVE
    # without the screened count the same node is unresolved (pending tissue)
    assert not resolve_node_label(
        NodeLabel.NEGATIVE, tissue=100, classified=30, failed=0
    ).resolved


def test_raster_draws_screened_negative_apart_from_not_yet_classified():
    geo = GridGeometry(
        l0_width=400,
        l0_height=100,
        slide_mpp=1.0,
        model_mpp=1.0,
        patch_px=100,
        stride_px=100,
    )
    grid = PredictionGrid(geo)
    grid.set_screened_negative(np.array([1]))
    raster = HeatmapRaster(grid, HeatmapStyle(colormap_lut(DEFAULT_COLORMAP)))
    pending, screened = raster.rgba[0, 0], raster.rgba[0, 1]
    assert pending[3] == PENDING_RGBA[3] and screened[3] == SCREENED_RGBA[3]
    assert not np.array_equal(pending, screened)
    assert raster.probability_at(150, 50)[0] is CellState.SCREENED_NEGATIVE
    # the view is classified in full: screened-negative cells are pending for it, not for the idle pass
    assert list(grid.pending(screened=True)) == [0, 1, 2, 3]
    assert list(grid.pending()) == [0, 2, 3]


def test_heatmap_png_veils_screened_negative_tissue_blue_apart_from_unclassified_grey(tmp_path):
    """heatmap.png: a screened-negative cell under the viewer's pale blue veil, composed like
    the viewer's (SCREENED_RGBA's alpha over the greyed thumbnail), not the grey of a cell
    nothing looked at; classified cells keep their colour-map paint."""
    geo = GridGeometry(l0_width=400, l0_height=100, slide_mpp=1.0, model_mpp=1.0, patch_px=100, stride_px=100)
    encoded = np.array([[np.nan, ENCODED[CellState.SCREENED_NEGATIVE], 0.9, -1.0]], np.float32)
    thumbnail = np.full((50, 200, 3), (200, 120, 160), np.uint8)  # 50 px a cell
    write_heatmap_png(tmp_path / "h.png", thumbnail, encoded, geo)
    png = np.asarray(Image.open(tmp_path / "h.png"))[..., :3].astype(float)
    grey, veiled, painted, background = (png[25, 25 + 50 * i] for i in range(4))
    assert np.array_equal(grey, background)  # nothing classified either way
    alpha = SCREENED_RGBA[3] / 255
    expected = grey * (1 - alpha) + np.asarray(SCREENED_RGBA[:3], float) * alpha
    assert np.abs(veiled - expected).max() <= 1.0
    assert veiled[2] - veiled[0] > 30 and not np.array_equal(veiled, grey)  # blue, not grey
    assert not np.allclose(painted, grey, atol=10) and not np.allclose(painted, veiled, atol=10)
    assert np.all(png[:, 50:100] == veiled)  # the whole cell, nothing beyond it
    assert np.all(png[:, :50] == grey)


def test_live_screen_marks_the_rest_only_after_the_selection(synthetic):
    with open_slide(synthetic) as reader:
        model = LesionFractionModel()
        grid, _ = _setup(reader, model)
        no_audit = np.zeros(grid.geometry.shape, bool)  # no audit lattice: the selection alone
        live = LiveScreen(reader, grid, ScreenFraction(), SETTINGS, 0.5, audit=no_audit)
        with pytest.raises(InferenceError):
            live.cells_for_full_model(grid)
        live.run_screen()
        geo = grid.geometry
        rounds = 0
        while True:  # as the worker does: classify what it asks for (here: the exact lesion fraction)
            todo, marked = live.cells_for_full_model(grid)
            if not todo.size:
                break
            assert not marked.size and not live.finished
            x, y = geo.cell_l0_xy(todo)
            grid.set_values(
                todo, lesion_fraction(x, y, geo.l0_patch).astype(np.float32)
            )
            rounds += 1
        assert rounds >= 2  # the selection, then the margin grown from what was found
        assert marked.size and live.finished and live.fallback is None
        assert np.all(grid.state.reshape(-1)[marked] == CellState.SCREENED_NEGATIVE)
        lesion = _lesion_cells(geo)
        assert np.all(grid.state.reshape(-1)[lesion] == CellState.COMPUTED)


def test_screening_model_settings_come_from_its_file_record():
    point = OperatingPoint(
        threshold=0.06,
        target="sensitivity >= 0.99",
        sensitivity=0.991,
        specificity=0.2,
        n_valid=1427,
    )
    info = mark_screening(
        ModelInfo(
            name="s",
            kind="cnn",
            architecture="screen-cnn",
            input=SCREEN_INPUT,
            operating_point=point,
        ),
        margin_patches=2,
    )
    settings = screen_settings(info)
    assert settings.threshold == 0.06 and settings.margin_patches == 2
    with pytest.raises(ModelLoadError, match="not a screening model"):
        screen_settings(
            ModelInfo(
                name="p", kind="cnn", architecture="compact-cnn", operating_point=point
            )
        )
    with pytest.raises(ModelLoadError):
        mark_screening(info, margin_patches=99)


def test_idle_pass_is_screened_and_the_view_is_classified_in_full(synthetic):
    from histoviewer.core.inference.worker import InferenceWorker

    with open_slide(synthetic) as reader:
        model = LesionFractionModel()
        grid, cutter = _setup(reader, model)
        # no audit lattice on this tiny slide (it would be all its tissue): the screen alone decides
        no_audit = np.zeros(grid.geometry.shape, bool)
        screen = LiveScreen(reader, grid, ScreenFraction(), SETTINGS, 0.5, audit=no_audit)
        worker = InferenceWorker(
            reader, model, grid, background=True, cutter=cutter, screen=screen
        )
        try:
            assert worker.wait_idle(60)
            state = grid.state.reshape(-1)
            assert screen.finished and np.all(
                state[_lesion_cells(grid.geometry)] == CellState.COMPUTED
            )
            negatives = np.flatnonzero(state == CellState.SCREENED_NEGATIVE)
            assert negatives.size and grid.coverage() < 1.0
            # the user looks at screened-negative tissue: the full model classifies it
            x, y = grid.geometry.cell_l0_xy(negatives[:1])
            rect = (
                float(x[0]),
                float(y[0]),
                grid.geometry.l0_patch,
                grid.geometry.l0_patch,
            )
            worker.submit_view(rect)
            assert worker.wait_idle(60)
            in_view = grid.geometry.cells_in_rect(*rect)
            assert np.all(
                grid.state.reshape(-1)[in_view[grid.tissue.reshape(-1)[in_view]]]
                == CellState.COMPUTED
            )
        finally:
            worker.close()


def test_a_screened_maps_resolution_is_one_rule_with_or_without_a_domain_reason():
    """The live learned label and ``histoviewer lesions`` take the map's own resolution
    (``SlideLesions.resolved``): screened-negative cells are assessed, not pending, there too
    (a hand-made copy of the rule left them out and called such a node unclassified)."""
    from histoviewer.core.analysis.lesions import LesionParams, MapFrame
    from histoviewer.core.analysis.node_label import analyse_map

    encoded = np.full((8, 8), ENCODED[CellState.SCREENED_NEGATIVE], np.float32)
    encoded[::2, ::2] = 0.05  # the classified audit cells: no tumour
    found = analyse_map(encoded, MapFrame(l0_cell=400.0, mpp=0.25), LesionParams(threshold=0.5))
    assert found.counts.screened == 48 and found.counts.classified == 16
    assert found.resolved().resolved and found.resolved() == found.resolution
    assert found.resolution.label is NodeLabel.NEGATIVE
    unlike = found.resolved("tissue unlike the model's training data")
    assert not unlike.resolved and unlike.label is NodeLabel.UNKNOWN and "unlike" in unlike.reason


@pytest.fixture()
def wide(tmp_path):
    """The synthetic picture at 1 um/px: 16x the cells of ``synthetic``'s (41 x 31), so the
    audit lattice is a small part of the tissue; the lesion's top and bottom rows of cells
    are 36 % and 43 % lesion, its left and right columns 49 % and 44 %."""
    import tifffile

    from tests.core.inference_helpers import synthetic_rgb

    mpp = 1.0
    path = tmp_path / "wide.tiff"
    tifffile.imwrite(path, synthetic_rgb(), photometric="rgb", resolution=(1e4 / mpp, 1e4 / mpp),
                     resolutionunit="CENTIMETER")
    return path


def test_the_viewers_idle_pass_classifies_what_analyze_classifies(wide):
    """The idle pass audits on analyze's lattice (about 4 % of the tissue, at least 64
    patches), not on the viewer's domain lattice (a quarter of this slide's tissue, all of a
    smaller one's): with no view, the full model classifies exactly the cells ``analyze
    --strategy screened`` classifies and leaves the same cells screened negative."""
    from histoviewer.core.inference.grid import domain_sample_lattice
    from histoviewer.core.inference.screening import audit_lattice
    from histoviewer.core.inference.worker import InferenceWorker

    with open_slide(wide) as reader:
        model = LesionFractionModel()
        analysed, _screened, record = _run(reader, model, ScreenFraction(), None)
        grid, cutter = _setup(reader, model)
        tissue = int(grid.tissue.sum())
        # the two lattices differ on this slide: the test can tell which one the viewer uses
        assert audit_lattice(grid.tissue).sum() < domain_sample_lattice(grid.tissue).sum() < tissue
        screen = LiveScreen(reader, grid, ScreenFraction(), SETTINGS, 0.5)
        worker = InferenceWorker(reader, model, grid, background=True, cutter=cutter, screen=screen)
        try:
            assert worker.wait_idle(60)
        finally:
            worker.close()
        assert screen.finished and screen.fallback is None and record.fallback is None
        assert np.array_equal(grid.state, analysed.state)
        computed = int(np.count_nonzero(grid.state == CellState.COMPUTED))
        failed = int(np.count_nonzero(grid.state == CellState.FAILED))  # uniform patches (inference.blank), in both
        assert worker.classified == computed and computed + failed == record.full_model_patches < tissue
        assert np.count_nonzero(grid.state == CellState.SCREENED_NEGATIVE) == record.screened_negative > 0


def _idle_pass(reader, screen_model, settings, view=None, lesion_threshold=0.5):
    """The worker's idle pass on ``reader`` with no audit lattice; ``view``: a level-0 rect
    classified (in full) before the idle pass starts. Returns (grid, LiveScreen)."""
    from histoviewer.core.inference.worker import InferenceWorker

    model = LesionFractionModel()
    grid, cutter = _setup(reader, model)
    no_audit = np.zeros(grid.geometry.shape, bool)
    screen = LiveScreen(reader, grid, screen_model, settings, lesion_threshold, audit=no_audit)
    worker = InferenceWorker(reader, model, grid, background=False, cutter=cutter, screen=screen)
    try:
        if view is not None:
            worker.submit_view(view)
            assert worker.wait_idle(60)
        worker.set_background(True)
        assert worker.wait_idle(60)
    finally:
        worker.close()
    return grid, screen


def test_a_lesions_rim_found_by_the_margin_is_no_audit_miss_but_a_lesion_seen_unscreened_is(wide):
    """A screen that flags only the lesion's core (threshold 0.9: its rim of cells 36-49 %
    lesion is passed, tumour at a lesion threshold of 0.3): the margin grown from the core
    finds the rim, and that is no miss (before,
    every tumour cell outside the selection was one, so any lesion wider than its flagged
    core made the viewer classify the whole slide). A lesion the screen missed altogether,
    seen in a view, is a miss: the whole slide is classified."""

    core_only = replace(SETTINGS, threshold=0.9)
    with open_slide(wide) as reader:
        grid, screen = _idle_pass(reader, ScreenFraction(), core_only, lesion_threshold=0.3)
        rim = (grid.values >= 0.3) & (grid.values < 0.9) & (grid.state == CellState.COMPUTED)
        assert rim.sum() >= 20  # the case this test is about: tumour the screen passed
        lesion = _lesion_cells(grid.geometry)
        state = grid.state.reshape(-1)
        assert screen.finished and screen.fallback is None
        # the rim too, through the margin (uniform patches fail: inference.blank)
        assert np.all(np.isin(state[lesion], (CellState.COMPUTED, CellState.FAILED)))
        assert np.count_nonzero(state == CellState.SCREENED_NEGATIVE) > 0

        x, y, w, h = LESION_RECT
        grid, screen = _idle_pass(reader, ScreenFraction(blank=True), core_only, view=(x, y, w, h),
                                  lesion_threshold=0.3)
        assert screen.fallback is not None and not np.any(grid.state == CellState.SCREENED_NEGATIVE)
        assert not np.any(grid.state[grid.tissue] == CellState.NOT_COMPUTED)


def test_the_screened_idle_pass_fills_model_batches_from_lone_cells(wide, monkeypatch):
    """The idle pass's selection is patchy (the audit lattice's lone cells): its regions hold
    a cell or two, and the worker ran the model on each handful of patches as it came (a
    median batch of 6-7 on the CAMELYON-size phantom, a third of the model's speed). Background
    work now gathers regions until the batch is full (``BACKGROUND_GATHER_S``; long here, so
    the count does not depend on the machine's load)."""
    from histoviewer.core.inference import worker as worker_module
    from histoviewer.core.inference.worker import InferenceWorker, WorkerSchedule

    monkeypatch.setattr(worker_module, "BACKGROUND_GATHER_S", 5.0)
    calls: list[int] = []

    class Counting(LesionFractionModel):
        def predict_proba(self, patches):
            calls.append(len(patches))
            return super().predict_proba(patches)

    with open_slide(wide) as reader:
        model = Counting()
        grid, cutter = _setup(reader, model)
        screen = LiveScreen(reader, grid, ScreenFraction(), SETTINGS, 0.5)
        # 1-cell regions: every region a lone cell, as the audit lattice's are on a large slide
        schedule = WorkerSchedule(max_batch_patches=64, background_block_cells=1)
        worker = InferenceWorker(reader, model, grid, background=True, cutter=cutter, screen=screen,
                                 schedule=schedule)
        try:
            assert worker.wait_idle(60)
        finally:
            worker.close()
        assert screen.finished and worker.classified > 150
        # every round (selection with the audit, each margin ring) fills batches of up to 64
        # patches; one call per region or so would be 50+ calls
        assert len(calls) <= worker.classified // 64 + 6, calls


def _l0_per_screen_px(grid, screen_model, times: float) -> float:
    """A display scale ``times`` the screen's own um per px, in level-0 px per screen px."""
    return times * screen_model.input.mpp / grid.geometry.slide_mpp


@pytest.mark.parametrize("strategy", ["screened", "exhaustive"])
def test_an_overview_is_screened_and_zooming_past_the_screens_scale_classifies_it(
    synthetic, strategy
):
    from histoviewer.core.inference.worker import InferenceWorker

    with open_slide(synthetic) as reader:
        model = LesionFractionModel()
        grid, cutter = _setup(reader, model)
        screen_model = ScreenFraction()
        no_audit = np.zeros(grid.geometry.shape, bool)
        screen = (
            LiveScreen(reader, grid, screen_model, SETTINGS, 0.5, audit=no_audit)
            if strategy == "screened"
            else None
        )
        worker = InferenceWorker(
            reader, model, grid, background=False, cutter=cutter, screen=screen
        )
        try:
            whole = (0.0, 0.0, float(grid.geometry.l0_width), float(grid.geometry.l0_height))
            # the fitted slide, shown coarser than the screen's scale, with the idle pass on
            worker.submit_view(whole, l0_per_screen_px=_l0_per_screen_px(grid, screen_model, 2.0))
            worker.set_background(True)
            assert worker.wait_idle(60)
            state = grid.state.reshape(-1)
            assert np.all(state[_lesion_cells(grid.geometry)] == CellState.COMPUTED)
            negatives = np.flatnonzero(state == CellState.SCREENED_NEGATIVE)
            if strategy == "exhaustive":  # unchanged: the whole view classified in full
                assert negatives.size == 0 and grid.coverage() == 1.0
                return
            assert negatives.size and grid.coverage() < 1.0
            # the same view exactly at the screen's scale is no overview: classified in full
            worker.submit_view(whole, l0_per_screen_px=_l0_per_screen_px(grid, screen_model, 1.0))
            assert worker.wait_idle(60)
            assert np.count_nonzero(grid.state == CellState.SCREENED_NEGATIVE) == 0
            assert grid.coverage() == 1.0
        finally:
            worker.close()


def test_an_overview_is_classified_in_full_when_the_idle_pass_is_off(synthetic):
    from histoviewer.core.inference.worker import InferenceWorker

    with open_slide(synthetic) as reader:
        model = LesionFractionModel()
        grid, cutter = _setup(reader, model)
        screen_model = ScreenFraction()
        screen = LiveScreen(reader, grid, screen_model, SETTINGS, 0.5, audit=np.zeros(grid.geometry.shape, bool))
        worker = InferenceWorker(reader, model, grid, background=False, cutter=cutter, screen=screen)
        try:
            whole = (0.0, 0.0, float(grid.geometry.l0_width), float(grid.geometry.l0_height))
            worker.submit_view(whole, l0_per_screen_px=_l0_per_screen_px(grid, screen_model, 4.0))
            assert worker.wait_idle(60)
            assert grid.coverage() == 1.0 and not screen.screened
        finally:
            worker.close()
