"""Per-slide costs of ``analyze`` (issue 15): the heatmap's backdrop is a pyramid level of
about its size read whole, not a level twice that size resampled with Lanczos; the screened
strategy's full pass runs with the exhaustive pass's model threads and read-ahead."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import tifffile

from histoviewer.core.inference import analyze as analyze_module
from histoviewer.core.inference import screening as screening_module
from histoviewer.core.inference.analyze import (
    HEATMAP_MAX_PX,
    AnalyzeOptions,
    _heatmap_backdrop,
    _regions_ahead,
    analyze_slide,
    backdrop_level,
)
from histoviewer.core.inference.outputs import heatmap_base
from histoviewer.core.inference.pipeline import model_parallelism
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.models.screen_model import open_screen_model
from histoviewer.core.slide import open_slide
from tests.core.inference_helpers import LesionFractionModel, write_synthetic_tiff
from tests.core.test_screening import SETTINGS, ScreenFraction


def test_backdrop_level_is_the_largest_level_within_a_quarter_below_the_heatmap_size():
    assert HEATMAP_MAX_PX == 2048
    assert backdrop_level(((8000, 8000), (4000, 4000), (2000, 2000), (1000, 1000))) == 2
    assert (
        backdrop_level(((4096, 2048), (2048, 1024))) == 1
    )  # exactly the size: the level
    assert (
        backdrop_level(((100000, 200000), (3125, 6250), (1563, 3125), (782, 1563))) == 3
    )
    assert (
        backdrop_level(((5000, 5000), (1250, 1250))) is None
    )  # 4x steps: none close enough
    assert (
        backdrop_level(((1000, 800),)) is None
    )  # a small slide: its thumbnail is itself


def test_the_backdrop_reads_a_level_of_about_the_heatmap_size_whole(tmp_path):
    path = tmp_path / "pyramid.tiff"  # levels 4000 x 2000 and 2000 x 1000
    rgb = np.random.default_rng(2).integers(0, 256, (2000, 4000, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            rgb,
            tile=(256, 256),
            compression="jpeg",
            photometric="rgb",
            subifds=0,
            resolution=(1e4 / 0.5, 1e4 / 0.5),
            resolutionunit="CENTIMETER",
        )
        tif.write(
            rgb[::2, ::2].copy(),
            tile=(256, 256),
            compression="jpeg",
            photometric="rgb",
            subfiletype=1,
        )
    with open_slide(path) as reader:
        assert [tuple(d) for d in reader.info.level_dimensions] == [
            (4000, 2000),
            (2000, 1000),
        ]
        level1 = reader.read_region(0, 0, 1, 2000, 1000)
        fast = TiffRegionSource.open(path, reader)
        for source in (fast, None):
            thumb, base = _heatmap_backdrop(reader, source)
            assert thumb.shape == (1000, 2000, 3) and np.array_equal(thumb, level1)
            assert np.array_equal(base, heatmap_base(level1))
        if fast is not None:
            fast.close()


def test_the_screened_passes_get_the_exhaustive_passs_model_threads_and_read_ahead(tmp_path, monkeypatch):
    """The full model's passes of both strategies run with the same model threads and
    read-ahead (the screened one ran the model on one thread, the reader 3 regions ahead),
    the screened one with at least two readers (its patchy reads bound it); the screen pass
    on the same model threads (torch's own threads stall under load)."""
    calls: dict[str, list[dict]] = {"exhaustive": [], "screened": [], "screen": []}

    def recording(strategy, real):
        def classify_cells(grid, cutter, model, cells, **kwargs):
            screen_pass = isinstance(model, screening_module.ProbabilityOnly)
            calls["screen" if screen_pass else strategy].append(kwargs)
            return real(grid, cutter, model, cells, **kwargs)

        return classify_cells

    for module, strategy in ((analyze_module, "exhaustive"), (screening_module, "screened")):
        monkeypatch.setattr(module, "classify_cells", recording(strategy, module.classify_cells))
    slide = write_synthetic_tiff(tmp_path / "synthetic.tiff")
    model = LesionFractionModel()
    options = AnalyzeOptions(model_threads=3)
    for strategy in ("exhaustive", "screened"):
        summary = analyze_slide(slide, tmp_path / strategy, model, replace(options, strategy=strategy),
                                screen=(ScreenFraction(), SETTINGS))
        assert summary.strategy == strategy and calls[strategy]
    ahead = _regions_ahead(options, model.input.patch_px)
    for strategy in ("exhaustive", "screened"):
        assert all(k["model_threads"] == 3 and k["max_ahead"] == ahead for k in calls[strategy]), strategy
    assert all(k["read_threads"] >= screening_module.FULL_PASS_READ_THREADS == 2 for k in calls["screened"])
    assert len(calls["screen"]) == 1 and calls["screen"][0]["model_threads"] == 3
    for kwargs in calls.values():
        kwargs.clear()
    # a set torch thread count: one model thread everywhere, as in the exhaustive pass
    analyze_slide(slide, tmp_path / "torch", model, replace(options, strategy="screened", torch_threads=1),
                  screen=(ScreenFraction(), SETTINGS))
    assert calls["screened"] and all(k["model_threads"] == 1 for k in calls["screened"] + calls["screen"])


def test_the_screen_as_the_pipeline_calls_it_runs_on_parallel_model_threads_like_the_screen():
    screen, _ = open_screen_model("screen", device="cpu")
    try:
        wrapped = screening_module.ProbabilityOnly(screen)
        assert wrapped.parallel_calls is True and wrapped.device.type == "cpu"
        assert model_parallelism(wrapped) == model_parallelism(screen)
        assert model_parallelism(wrapped, 2) == model_parallelism(screen, 2) and model_parallelism(wrapped, 2)[0] == 2
    finally:
        screen.close()
