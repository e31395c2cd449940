"""The live overlay's core: map windows, the RGBA raster, and ``LiveHeatmap`` start-up,
scheduling, cache and errors (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from histoviewer.core.colormaps import COLORMAPS, DEFAULT_COLORMAP, colormap_lut
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import CellState, PredictionGrid
from histoviewer.core.inference.live import LiveHeatmap, LiveOptions
from histoviewer.core.inference.overlay import (
    FAILED_RGBA, PENDING_RGBA, HeatmapRaster, HeatmapStyle,
)
from histoviewer.core.slide.open import open_slide
from tests.core.inference_helpers import GLASS_X1, LESION_RECT, write_fresh_cnn, write_synthetic_tiff


def style(**kw) -> HeatmapStyle:
    return HeatmapStyle(colormap_lut(DEFAULT_COLORMAP), **kw)


def grid(stride: int = 96, shape_px=(3000, 2000)) -> PredictionGrid:
    return PredictionGrid(GridGeometry.for_slide(shape_px, 0.25, 1.0, 96, stride))


@pytest.mark.parametrize("stride", [96, 48, 24])
def test_map_windows_equal_the_same_part_of_the_whole_map(stride):
    g = grid(stride)
    rng = np.random.default_rng(0)
    cells = rng.choice(g.geometry.size, g.geometry.size // 2, replace=False)
    g.set_values(cells, rng.random(len(cells)).astype(np.float32))
    g.set_failed(rng.choice(g.geometry.size, 20, replace=False))
    values, state = g.map()
    for window in [(0, 5, 0, 7), (3, 11, 4, 9), (g.geometry.rows - 2, g.geometry.rows, 0, g.geometry.cols)]:
        r0, r1, c0, c1 = window
        wv, ws = g.map(window)
        assert np.array_equal(ws, state[r0:r1, c0:c1])
        assert np.allclose(wv, values[r0:r1, c0:c1])


def test_raster_colours_each_state_distinctly_and_respects_the_threshold():
    g = grid()
    tissue = np.ones(g.geometry.shape, bool)
    tissue[0, :] = False
    g.set_tissue(tissue)
    cols = g.geometry.cols
    g.set_values(np.array([cols + 0, cols + 1, cols + 2]), np.array([0.2, 0.6, 1.0], np.float32))
    g.set_failed(np.array([cols + 3]))
    r = HeatmapRaster(g, style(opacity=0.5, threshold=0.5))
    px = r.rgba[1]
    assert np.all(r.rgba[0] == 0)  # background: transparent
    assert np.all(px[0] == 0)  # below the threshold: transparent
    assert px[1, 3] == px[2, 3] == 128 and not np.array_equal(px[1], px[2])  # colour map, opacity 0.5
    assert px[2, :3].tolist() == [(int(c) * 128 + 127) // 255 for c in colormap_lut("viridis")[255]]  # premultiplied
    assert px[3, 3] == FAILED_RGBA[3]
    assert px[4, 3] == PENDING_RGBA[3]  # not yet computed: the grey veil
    r.set_style(style(opacity=1.0, threshold=0.1))
    assert r.rgba[1, 0, 3] == 255  # 0.2 is above the new threshold
    r.set_style(style(threshold=0.5).with_(show_pending=False))
    assert r.rgba[1, 4, 3] == 0


def test_raster_refreshes_only_the_window_of_new_cells_including_overlap():
    g = grid(48)  # each patch covers 2 x 2 map cells
    r = HeatmapRaster(g, style(threshold=0.0))
    before = r.rgba.copy()
    cell = 5 * g.geometry.cols + 7
    g.set_values(np.array([cell]), np.array([0.9], np.float32))
    window = r.window_for_cells(np.array([cell]))
    assert window == (5, 7, 7, 9)
    r.refresh(window)
    changed = np.argwhere(np.any(r.rgba != before, axis=-1))
    assert sorted(map(tuple, changed)) == [(5, 7), (5, 8), (6, 7), (6, 8)]
    x, y = g.geometry.cell_l0_xy(np.array([cell]))
    state, value = r.probability_at(float(x[0]) + 1, float(y[0]) + 1)
    assert state is CellState.COMPUTED and value == pytest.approx(0.9)
    assert r.probability_at(-5, 0) is None


def test_style_values_are_checked():
    with pytest.raises(ValueError):
        style(opacity=1.5)
    with pytest.raises(ValueError):
        HeatmapStyle(np.zeros((10, 3), np.uint8))
    with pytest.raises(ValueError):
        colormap_lut("rainbow-of-doom")


# -- LiveHeatmap ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic_tiff(tmp_path_factory.mktemp("synthetic") / "synthetic.tiff")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return write_fresh_cnn(tmp_path_factory.mktemp("model"))


class Events:
    def __init__(self):
        self.windows, self.errors, self.failures, self.ready, self.idle = [], [], [], 0, 0

    def kwargs(self):
        return dict(on_ready=lambda _l: self._ready(), on_update=self.windows.append,
                    on_failure=self.failures.append, on_idle=self._idle, on_error=self.errors.append)

    def _ready(self):
        self.ready += 1

    def _idle(self):
        self.idle += 1


def test_live_heatmap_classifies_the_view_then_the_rest_and_restores_from_cache(synthetic, model_path, tmp_path):
    ev = Events()
    opts = LiveOptions(model=str(model_path), device="cpu", background=False, cache_dir=tmp_path)
    with open_slide(synthetic) as reader:
        live = LiveHeatmap(synthetic, reader, opts, style(), **ev.kwargs())
        live.submit_view(LESION_RECT)  # before start-up finished: remembered
        assert live.wait_ready(60) and ev.ready == 1 and not live.restored_from_cache
        assert live.wait_idle(60)
        assert live.coverage(LESION_RECT) == 1.0
        assert 0 < live.coverage() < 1.0  # background off: only the view
        version = live.results_version
        assert version > 1  # the restored (empty) map, then each batch
        live.submit_view(LESION_RECT)  # nothing left to do there: no new results
        # (no sleep needed: submit_view marks the worker busy before it returns, so wait_idle
        # waits for the worker to look at the view again)
        assert live.wait_idle(60) and live.results_version == version
        assert ev.windows and not ev.errors
        # every classified cell is coloured in the raster, the glass is transparent
        g = live.grid.geometry
        glass_cell = g.cell_at(GLASS_X1 / 3, 100)
        assert live.raster.rgba.reshape(-1, 4)[glass_cell, 3] == 0
        live.set_background(True)
        assert live.wait_idle(60) and live.coverage() == 1.0
        live.close()
        live.close()  # idempotent
        ev2 = Events()
        again = LiveHeatmap(synthetic, reader, opts, style(), **ev2.kwargs())
        assert again.wait_ready(60) and again.restored_from_cache and again.coverage() == 1.0
        assert again.wait_idle(60) and again._worker.classified == 0
        again.close()


def test_live_heatmap_on_a_slide_without_scale_reports_an_error(tmp_path, model_path):
    import tifffile

    path = tmp_path / "noscale.tiff"
    tifffile.imwrite(path, np.full((600, 800, 3), 200, np.uint8), photometric="rgb")
    ev = Events()
    with open_slide(path) as reader:
        live = LiveHeatmap(path, reader, LiveOptions(model=str(model_path), device="cpu"), style(), **ev.kwargs())
        assert not live.wait_ready(30)
        assert ev.errors and "scale" in ev.errors[0] and live.error == ev.errors[0]
        live.close()


def test_live_heatmap_with_a_missing_model_reports_it(synthetic, tmp_path):
    ev = Events()
    with open_slide(synthetic) as reader:
        live = LiveHeatmap(synthetic, reader, LiveOptions(model=str(tmp_path / "nope.safetensors")), style(),
                           **ev.kwargs())
        assert not live.wait_ready(30)
        assert "nope.safetensors" in ev.errors[0]
        live.close()


def test_closing_during_start_up_leaves_no_threads(synthetic, model_path, tmp_path):
    import threading

    with open_slide(synthetic) as reader:
        live = LiveHeatmap(synthetic, reader, LiveOptions(model=str(model_path), device="cpu", cache_dir=tmp_path),
                           style())
        live.submit_view((0, 0, 4000, 3000))
        live.close()
        assert not live.ready
    assert [t.name for t in threading.enumerate() if t.name.startswith("histoviewer-")] == []



@pytest.mark.parametrize("name", list(COLORMAPS))
def test_screen_colours_equal_the_exports(name):
    from histoviewer.core.colormaps import heatmap_rgba

    g = grid()
    rng = np.random.default_rng(1)
    values = rng.random(g.geometry.size).astype(np.float32)
    g.set_values(np.arange(g.geometry.size), values)
    r = HeatmapRaster(g, HeatmapStyle(colormap_lut(name), opacity=1.0, threshold=0.3))
    expected = heatmap_rgba(values.reshape(g.geometry.shape), name, opacity=1.0, threshold=0.3)
    assert np.array_equal(r.rgba[..., 3], expected[..., 3])  # same cells drawn
    drawn = expected[..., 3] > 0
    assert np.array_equal(r.rgba[drawn], expected[drawn])  # in the same colours


def test_regions_from_the_tile_cache_equal_fresh_reads(synthetic):
    """Reused viewer tiles (some cached, some not) give exactly the pixels of a direct read."""
    from histoviewer.core.inference.cached_regions import CachedTileRegionSource
    from histoviewer.core.tiles.cache import ByteBoundedCache
    from histoviewer.core.tiles.geometry import LevelTiling, TileKey

    with open_slide(synthetic) as reader:
        tiling = LevelTiling(reader.info, 256)
        cache = ByteBoundedCache(1 << 30)
        for tx, ty in [(2, 1), (3, 1), (2, 2), (7, 5)]:  # some tiles, as a view leaves them
            rect = tiling.tile_rect(0, tx, ty)
            rgb = reader.read_region(rect.l0_x, rect.l0_y, 0, rect.lv_width, rect.lv_height)
            cache.put(TileKey(1, 0, tx, ty), rgb, rgb.nbytes)
        source = CachedTileRegionSource(cache, tiling, 1, lambda rgb: rgb, reader)
        for x, y, w, h in [(600, 300, 500, 400), (3900, 2900, 300, 300), (-20, -10, 100, 80), (0, 0, 4000, 3000)]:
            expected = reader.read_region(x, y, 0, w, h)
            got = source.read_region(x, y, 0, w, h)
            assert got.shape == expected.shape and np.array_equal(got[:, :, :3], expected[:, :, :3])
        assert source.tiles_reused > 0 and source.tiles_read > 0
        other = CachedTileRegionSource(cache, tiling, 2, lambda rgb: rgb, reader)  # another slide's id
        other.read_region(600, 300, 0, 500, 400)
        assert other.tiles_reused == 0
