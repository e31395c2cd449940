"""The uncertainty map (``inference.uncertainty_map``): TTA disagreement on the probability
map's grid, cell for cell what ``explain.tta`` says of the same patch; ``analyze`` writes it
and the lesions carry it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from histoviewer.core.analysis.lesion_uncertainty import lesion_uncertainties
from histoviewer.core.analysis.lesions import Lesion, MapFrame
from histoviewer.core.analysis.map_io import read_probability_map
from histoviewer.core.analysis.summary import SlideSummary
from histoviewer.core.errors import Cancelled
from histoviewer.core.explain.tta import tta_predict
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.inference.grid import CellState
from histoviewer.core.inference.overlay import HeatmapRaster
from histoviewer.core.inference.regions import RegionCutter, plan_regions
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.inference.uncertainty_map import (
    UNCERTAINTY_DISPLAY_MAX,
    compute_uncertainty,
    new_uncertainty_grid,
    uncertainty_style,
)
from histoviewer.core.progress import JobControl
from histoviewer.core.slide import open_slide
from histoviewer.core.staging_terms import SizeClass
from histoviewer.core.strict_json import strict_dumps
from tests.core.inference_helpers import (
    LESION,
    MPP,
    TISSUE,
    LesionFractionModel,
    write_synthetic_tiff,
)

PCAM_MPP, P = 0.972, 96


class TopLesionModel(LesionFractionModel):
    """P = share of the patch's TOP HALF in lesion colour: orientation matters by construction
    (a patch half in the lesion says 1 one way up, 0 the other)."""

    def predict_proba(self, patches: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.passes()
        g = patches[:, : patches.shape[1] // 2, :, 1].astype(np.float32)
        lo, hi = LESION[1], TISSUE[1]
        return np.clip((hi - g) / (hi - lo), 0, 1).mean(axis=(1, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    return write_synthetic_tiff(tmp_path_factory.mktemp("synthetic") / "synthetic.tiff")


@pytest.fixture
def reader(synthetic_path):
    with open_slide(synthetic_path) as r:
        yield r


def _grid(reader):
    g = GridGeometry.for_slide(reader.info.dimensions, MPP, PCAM_MPP, P, P)
    return g, new_uncertainty_grid(g, grid_tissue(reader, g))


def test_map_matches_per_patch_tta_and_is_zero_for_an_orientation_free_model(reader):
    g, grid = _grid(reader)
    cutter = RegionCutter(reader, g)
    model = TopLesionModel()
    seen = []
    times = compute_uncertainty(
        grid,
        cutter,
        model,
        block=8,
        control=JobControl(progress=lambda s, d, t, _: seen.append((d, t))),
    )
    tissue = np.flatnonzero(grid.tissue.reshape(-1))
    assert times.patches == tissue.size and seen[-1] == (tissue.size, tissue.size)
    values, state = grid.snapshot()
    assert np.all(state.reshape(-1)[tissue] == CellState.COMPUTED)
    # cell for cell, the per-patch TTA of the same patches
    for job in plan_regions(g, tissue, block=8):
        expected = tta_predict(model, cutter(job)).uncertainty
        np.testing.assert_allclose(values.reshape(-1)[job.cells], expected, atol=1e-6)
    # orientation matters only where a patch is partly lesion: high there, zero inside and outside
    flat = values.reshape(-1)[tissue]
    assert flat.max() > 0.2 and np.count_nonzero(flat == 0) > flat.size // 3
    # the same slide with a model that reads the whole patch (rotation invariant): zero everywhere
    _, invariant = _grid(reader)
    compute_uncertainty(invariant, cutter, LesionFractionModel(), block=8)
    inv_values, inv_state = invariant.snapshot()
    assert np.all(inv_values[inv_state == CellState.COMPUTED] < 1e-6)


def test_a_view_request_computes_only_its_cells_and_cancel_stops(reader):
    g, grid = _grid(reader)
    cutter = RegionCutter(reader, g)
    view = g.cells_in_rect(2000, 800, 600, 600)
    compute_uncertainty(grid, cutter, TopLesionModel(), view, block=8)
    state = grid.state.reshape(-1)
    computed = np.flatnonzero(state == CellState.COMPUTED)
    assert computed.size and set(computed) <= set(view)
    assert (
        np.count_nonzero(state == CellState.NOT_COMPUTED) > 0
    )  # the rest is left for later
    _, fresh = _grid(reader)
    with pytest.raises(Cancelled):
        compute_uncertainty(
            fresh, cutter, TopLesionModel(), control=JobControl(cancel=lambda: True)
        )
    assert fresh.coverage() == 0.0


def test_uncertainty_style_stretches_the_colour_scale_and_hides_agreeing_views(reader):
    g, grid = _grid(reader)
    style = uncertainty_style()
    # value UNCERTAINTY_DISPLAY_MAX (and above) is the top colour; 0 the bottom one
    top = round(UNCERTAINTY_DISPLAY_MAX * 255)
    assert np.array_equal(style.lut[top], style.lut[255]) and not np.array_equal(
        style.lut[0], style.lut[255]
    )
    tissue = np.flatnonzero(grid.tissue.reshape(-1))
    grid.set_values(tissue[:2], np.array([0.0, 0.3], np.float32))
    raster = HeatmapRaster(grid, style)
    r0, c0 = divmod(int(tissue[0]), g.cols)
    r1, c1 = divmod(int(tissue[1]), g.cols)
    assert raster.rgba[r0, c0, 3] == 0  # the views agree: not painted
    assert raster.rgba[r1, c1, 3] > 0  # drawn, in the top colour


def test_analyze_writes_the_uncertainty_map_and_each_lesion_carries_it(
    synthetic_path, tmp_path
):
    summary = analyze_slide(
        synthetic_path,
        tmp_path / "tta",
        TopLesionModel(),
        AnalyzeOptions(model="m", uncertainty=True),
    )
    values, geometry = read_probability_map(summary.files.uncertainty_tiff)
    assert geometry == summary.geometry
    prob, _ = read_probability_map(summary.files.probability_tiff)
    assert values.shape == prob.shape
    assert np.array_equal(values < 0, prob < 0)  # background and failed cells agree
    assert np.nanmax(values) > 0.2
    assert summary.lesions and summary.timing.uncertainty_s > 0
    first = summary.lesions[0]
    assert first.tta_uncertainty_computed == 1.0
    assert 0 < first.tta_uncertainty_mean <= first.tta_uncertainty_max <= 0.5
    # the rows survive summary.json
    again = SlideSummary.from_dict(json.loads(strict_dumps(summary.to_dict())))
    assert again.lesions[0].tta_uncertainty_max == pytest.approx(
        first.tta_uncertainty_max, abs=1e-6
    )


def test_lesion_uncertainty_reads_the_lesions_own_cells():
    # two lesions on a 6 x 9 map; uncertainty 0.1 on the left one, 0.3 / 0.4 on the right
    prob = np.zeros((6, 9))
    prob[1:4, 1:3] = 0.9
    prob[2:5, 6:8] = 0.8
    unc = np.full(prob.shape, 0.05)
    unc[1:4, 1:3] = 0.1
    unc[2:5, 6:8] = 0.3
    unc[4, 7] = 0.4
    unc[0, 0] = np.nan
    frame = MapFrame(l0_cell=100.0, mpp=0.25)

    def lesion(
        index, x, y
    ):  # a small outline inside the cells, as the window correction leaves
        ring = ((x - 30, y - 30), (x + 30, y - 30), (x + 30, y + 30), (x - 30, y + 30))
        return Lesion(
            index=index,
            l0_outline=ring,
            l0_centroid=(x, y),
            l0_bbox=(x - 30, y - 30, 60, 60),
            l0_diameter_ends=((x - 30, y - 30), (x + 30, y + 30)),
            l0_diameter=85.0,
            diameter_mm=0.02,
            area_mm2=0.0002,
            max_probability=0.9,
            mean_probability=0.9,
            cells=6,
            size_class=SizeClass.ITC,
        )

    left, right = lesion(1, 200, 250), lesion(2, 700, 350)
    u_left, u_right = lesion_uncertainties(prob, unc, frame, 0.5, (left, right))
    assert u_left.mean == pytest.approx(0.1) and u_left.max == pytest.approx(0.1)
    assert u_right.max == pytest.approx(0.4) and u_right.mean == pytest.approx(
        (0.3 * 5 + 0.4) / 6
    )
    assert u_right.computed_fraction == 1.0
    unc[2:5, 6:8] = np.nan  # nothing computed over the right lesion: unknown, not 0
    _, unknown = lesion_uncertainties(prob, unc, frame, 0.5, (left, right))
    assert (
        unknown.mean is None
        and unknown.max is None
        and unknown.computed_fraction == 0.0
    )


def test_live_uncertainty_runs_off_the_callers_thread_reports_progress_and_cancels(
    reader, synthetic_path
):
    import threading

    from histoviewer.core.inference.grid import PredictionGrid
    from histoviewer.core.inference.uncertainty_live import LiveUncertainty
    from tests.gates import Gate

    g = GridGeometry.for_slide(reader.info.dimensions, MPP, PCAM_MPP, P, P)
    heatmap_grid = PredictionGrid(g, grid_tissue(reader, g))
    gate = Gate(held=True)
    model = TopLesionModel(gate=gate)
    outcomes, threads, progress = [], [], []
    finished = threading.Event()

    def on_finished(outcome):
        threads.append(threading.current_thread().name)
        outcomes.append(outcome)
        finished.set()

    live = LiveUncertainty(
        synthetic_path,
        reader,
        heatmap_grid,
        "unused",
        "cpu",
        model=model,
        on_progress=lambda d, t: progress.append((d, t)),
        on_finished=on_finished,
        batch_size=4,
        block=2,
    )  # many batches: cancellation has a point to act
    try:
        view = (1800.0, 600.0, 1500.0, 1500.0)
        assert live.request("view", view)
        assert gate.wait_arrivals(
            1
        )  # the model is busy on the job thread; the caller goes on
        assert live.busy and not live.request("slide", None)  # one request at a time
        gate.open()
        assert finished.wait(30) and outcomes[0].status == "done"
        assert threads == ["histoviewer-uncertainty"]
        n = outcomes[0].patches
        assert n > 0 and live.cells_for(view).size == 0 and progress[-1] == (n, n)
        assert "view" in outcomes[0].message and f"{n} patches" in outcomes[0].message
        assert live.raster.rgba[..., 3].any()  # the lesion's edges are painted
        assert live.describe_at(2100.0, 1450.0).startswith("uncertainty ")
        # the whole slide, cancelled while the model is busy: the cells done so far stay
        finished.clear()
        gate = model.gate = Gate(held=True)
        assert live.request("slide", None)
        assert gate.wait_arrivals(1)
        live.cancel()
        gate.open()
        assert finished.wait(30) and outcomes[1].status == "cancelled"
        assert "cancelled" in outcomes[1].message
        assert 0 < live.coverage() < 1.0
    finally:
        gate.open()
        live.close()
    assert not live.busy


def test_export_writes_the_uncertainty_map_as_values_and_as_a_picture(
    synthetic_path, tmp_path
):
    import json

    import tifffile

    from histoviewer.core.export.uncertainty import (
        export_uncertainty_map,
        read_uncertainty_analysis,
    )

    summary = analyze_slide(
        synthetic_path,
        tmp_path / "a",
        TopLesionModel(),
        AnalyzeOptions(model="m", uncertainty=True),
    )
    data = read_uncertainty_analysis(tmp_path / "a")
    values, geometry = read_probability_map(summary.files.uncertainty_tiff)
    assert data.geometry == geometry and np.array_equal(
        data.encoded, values.astype(np.float32), equal_nan=True
    )
    # values: the cells of a region, losslessly, as a map TIFF with its geometry and crop
    region = (1800.0, 600.0, 1500.0, 1500.0)
    raw = export_uncertainty_map(
        tmp_path / "u.tiff", data, slide_path=str(synthetic_path), region=region
    )
    with tifffile.TiffFile(tmp_path / "u.tiff") as tf:
        saved, meta = tf.asarray(), json.loads(tf.pages[0].description)
    crop = meta["crop"]
    r0, c0 = crop["row0"], crop["col0"]
    np.testing.assert_array_equal(
        saved, data.encoded[r0 : r0 + crop["rows"], c0 : c0 + crop["cols"]]
    )
    assert (
        raw.kind == "uncertainty-raw"
        and meta["map"] == "uncertainty"
        and "8 rotations" in meta["meaning"]
    )
    assert json.loads(raw.sidecars[0].read_text())["slide"] == "synthetic.tiff"
    # a picture: the uncertain cells in the colour scale, a legend band below
    from PIL import Image

    pic = export_uncertainty_map(
        tmp_path / "u.png", data, slide_path=str(synthetic_path)
    )
    img = np.asarray(Image.open(tmp_path / "u.png").convert("RGB"))
    assert (
        pic.kind == "uncertainty-image"
        and img.shape[1] == pic.size[0]
        and img.shape[0] > img.shape[1] * 0.8
    )
    colours = {tuple(c) for c in img.reshape(-1, 3)[::97]}
    assert len(colours) > 5  # the map's colours and the legend's text
    with pytest.raises(Exception, match="uncertainty map is written as"):
        export_uncertainty_map(tmp_path / "u.jpg", data)


def test_a_model_blind_to_orientation_says_its_map_shows_little():
    from histoviewer.core.inference.uncertainty_map import (
        uncertainty_caveat,
        uncertainty_meta,
    )
    from histoviewer.core.models.classifier import ModelInfo
    from histoviewer.core.models.record import ModelRecord

    assert "does not show where it errs" in uncertainty_caveat("handcrafted")
    assert uncertainty_caveat("cnn") == ""
    g = GridGeometry.for_slide((4000, 3000), MPP, PCAM_MPP, P, P)
    hand = ModelRecord.from_info(
        ModelInfo(name="h", kind="handcrafted", architecture="lr")
    )
    cnn = ModelRecord.from_info(
        ModelInfo(name="c", kind="cnn", architecture="compact-cnn")
    )
    assert "caveat" in uncertainty_meta(
        g, model=hand
    ) and "caveat" not in uncertainty_meta(g, model=cnn)


def test_report_rows_carry_each_lesions_uncertainty():
    from histoviewer.core.report import LesionEntry, build_report, lesions_csv
    from tests.core.test_report_core import _rows, _slide

    box = (0.0, 0.0, 40.0, 40.0)
    les = LesionEntry(
        "lesion-1",
        "micro",
        0.5,
        0.1,
        0.9,
        0.8,
        3,
        (10.0, 20.0),
        box,
        tta_uncertainty_mean=0.04,
        tta_uncertainty_max=0.21,
    )
    plain = LesionEntry("lesion-1", "micro", 0.5, 0.1, 0.9, 0.8, 3, (10.0, 20.0), box)
    report = build_report(
        [_slide("a.svs", 0.5, "micro", [les]), _slide("b.svs", 0.5, "micro", [plain])]
    )
    a, b = _rows(lesions_csv(report))
    assert a["tta_uncertainty_mean"] == "0.04" and a["tta_uncertainty_max"] == "0.21"
    assert (
        b["tta_uncertainty_mean"] == b["tta_uncertainty_max"] == ""
    )  # none computed: empty, never 0
    doc = json.loads(report.to_json())
    assert doc["slides"][0]["lesions"][0]["tta_uncertainty_max"] == 0.21
    assert "tta_uncertainty_max" not in doc["slides"][1]["lesions"][0]
