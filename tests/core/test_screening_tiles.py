"""Reads of the screened analysis (issue 15). The margin rounds read tiles the first round
decoded long before, which the least-recently-used tile cache had let go, so the full pass
holds the tiles where a margin is likeliest to grow (``margin_hold.margin_hold_tiles``,
``TiffRegionSource.hold``) and releases them when it ends; the screen pass reads on two
threads. Pixels, scores and outputs stay the same."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from histoviewer.core.inference import margin_hold, screening
from histoviewer.core.inference.margin_hold import margin_hold_tiles
from histoviewer.core.inference.regions import RegionCutter, RegionJob
from histoviewer.core.inference.screening import run_screen
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.slide import open_slide
from tests.core.inference_helpers import LesionFractionModel, synthetic_rgb
from tests.core.test_screening import ScreenFraction, _setup, screened_pass

TILE = 256
WAIT_S = 10.0  # a bound on waiting for the other reader, never a sleep
TILE_BYTES = TILE * TILE * 3


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    """The synthetic slide as a tiled JPEG TIFF at 1 um/px, read directly by
    ``TiffRegionSource``: 4,000 x 3,000 px in 256 px tiles (16 x 12)."""
    import tifffile

    path = tmp_path_factory.mktemp("tiles") / "tiled.tiff"
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            synthetic_rgb(),
            tile=(TILE, TILE),
            compression="jpeg",
            photometric="rgb",
            resolution=(1e4, 1e4),
            resolutionunit="CENTIMETER",
        )
    return path


def _decoded_keys(source: TiffRegionSource, monkeypatch) -> list[int]:
    """Records the tile index of every decode (cache misses) of ``source``."""
    keys: list[int] = []
    original = TiffRegionSource._tile

    def counting(self, page, index):
        if self is source:
            keys.append(int(index))
        return original(self, page, index)

    monkeypatch.setattr(TiffRegionSource, "_tile", counting)
    return keys


def test_tiles_in_names_the_tiles_a_read_decodes(tiled, monkeypatch):
    with open_slide(tiled) as reader:
        source = TiffRegionSource.open(tiled, reader, tile_cache_bytes=0)
        assert source is not None
        try:
            keys = _decoded_keys(source, monkeypatch)
            # inside one tile, across 2 and 4 tiles, off the image's left/top and right/bottom
            for x, y, w, h in [
                (10, 10, 100, 100),
                (200, 30, 100, 50),
                (500, 500, 40, 40),
                (-50, -20, 120, 90),
                (3900, 2950, 300, 300),
            ]:
                keys.clear()
                source.read_region(x, y, 0, w, h)
                assert sorted(keys) == sorted(source.tiles_in(0, x, y, x + w, y + h))
            assert source.tile_grid(0) == (TILE, TILE, 4000, 3000)
        finally:
            source.close()


def test_held_tiles_outlive_the_cache_bound_until_released(tiled, monkeypatch):
    with open_slide(tiled) as reader:
        source = TiffRegionSource.open(
            tiled, reader, tile_cache_bytes=TILE_BYTES
        )  # one tile
        plain = TiffRegionSource.open(tiled, reader, tile_cache_bytes=0)
        assert source is not None and plain is not None
        try:
            keys = _decoded_keys(source, monkeypatch)
            boxes = [
                (0, 0),
                (TILE, 0),
                (2 * TILE, 0),
                (0, 0),
                (TILE, 0),
            ]  # tiles 0, 1, 2, 0, 1
            source.hold(0, [0, 1])
            for x, y in boxes:
                assert np.array_equal(
                    source.read_region(x, y, 0, TILE, TILE),
                    plain.read_region(x, y, 0, TILE, TILE),
                )
            assert keys == [0, 1, 2]  # tiles 0 and 1 held past the one-tile cache
            assert source.held_bytes == 2 * TILE_BYTES
            source.release_held()
            assert source.held_bytes == 0
            source.read_region(0, 0, 0, TILE, TILE)
            assert keys == [0, 1, 2, 0]  # released: decoded again
            # without a hold the same reads decode tiles 0 and 1 again
            keys.clear()
            source.clear_cache()
            for x, y in boxes:
                source.read_region(x, y, 0, TILE, TILE)
            assert keys == [0, 1, 2, 0, 1]
        finally:
            source.close()
            plain.close()


def test_the_hold_takes_the_highest_screen_scores_first_within_its_budget(
    tiled, monkeypatch
):
    with open_slide(tiled) as reader:
        source = TiffRegionSource.open(
            tiled, reader
        )  # no cache: a read decodes all it meets
        assert source is not None
        try:
            model = LesionFractionModel()
            _, cutter = _setup(reader, model, source=source)
            geometry = cutter.geometry
            keys = _decoded_keys(source, monkeypatch)

            def read_tiles(rows: range, cols: range) -> set[int]:
                """The tiles the cutter's own reads of these cells, one by one, decode."""
                keys.clear()
                for r in rows:
                    for c in cols:
                        cutter(RegionJob(np.array([r * geometry.cols + c]), r, c, r, c))
                return set(keys)

            tissue = np.ones(geometry.shape, bool)
            score = np.zeros(geometry.shape, np.float32)
            score[20, 20] = 0.9  # one likely-tumour cell, about (1,945, 1,945) level px
            score[5, 30] = 0.3  # a weaker one
            # the margin's one ring around each: the tiles the reads of their 3 x 3 cells meet
            strong = read_tiles(range(19, 22), range(19, 22))
            weak = read_tiles(range(4, 7), range(29, 32)) - strong
            assert len(strong) > 3 and weak
            everything = margin_hold_tiles(
                source, cutter, score, tissue, 0.1, rings=1, budget_bytes=1 << 30
            )
            assert set(everything) >= strong | weak  # every tile those reads meet
            rank = {t: i for i, t in enumerate(everything)}
            assert max(rank[t] for t in strong) < min(rank[t] for t in weak)  # by score
            held = margin_hold_tiles(
                source, cutter, score, tissue, 0.1, rings=1, budget_bytes=3 * TILE_BYTES
            )
            assert (
                held == everything[:3] and not set(held) & weak
            )  # the budget, strongest first
            assert margin_hold_tiles(source, cutter, score, tissue, 0.1, rings=0) == []
            assert margin_hold_tiles(source, cutter, score, tissue, 0.95, rings=1) == []
        finally:
            source.close()


def _screened_with(tiled, hold_bytes: int, monkeypatch):
    """A screened full pass on ``tiled`` through a one-tile decoded-tile cache, holding at most
    ``hold_bytes``: (grid, tiles decoded by the full pass, the source after the pass)."""
    monkeypatch.setattr(margin_hold, "MARGIN_HOLD_BYTES", hold_bytes)
    with open_slide(tiled) as reader:
        source = TiffRegionSource.open(tiled, reader, tile_cache_bytes=TILE_BYTES)
        assert source is not None
        try:
            model = LesionFractionModel()
            grid, cutter = _setup(reader, model, source=source)
            screened = run_screen(
                reader, grid.geometry, grid.tissue, ScreenFraction(), source=source
            )
            before = source.tiles_decoded
            _, record = screened_pass(
                grid,
                cutter,
                model,
                screened,
                audit=np.zeros((1, 1), bool),
            )
            assert record.fallback is None
            return (
                grid,
                source.tiles_decoded - before,
                (source.held_bytes, source._hold_keys),
            )
        finally:
            source.close()


def test_the_margin_rounds_find_their_tiles_held_and_classify_the_same(
    tiled, monkeypatch
):
    held_grid, held_decodes, after = _screened_with(tiled, 256 << 20, monkeypatch)
    plain_grid, plain_decodes, _ = _screened_with(tiled, 0, monkeypatch)
    # the same cells classified to the same values, and the same cells screened negative
    np.testing.assert_array_equal(held_grid.state, plain_grid.state)
    np.testing.assert_array_equal(held_grid.values, plain_grid.values)
    # the margin rounds re-read the lesion's tiles: held, they are not decoded again
    assert held_decodes < plain_decodes
    assert after == (0, frozenset())  # released when the pass ends


def test_the_screen_reads_on_two_threads_and_scores_the_same(tiled, monkeypatch):
    """The screen pass's reading and resampling outweighs its model (CAMELYON-size phantom:
    ~0.6 CPU-s against ~0.55 on two model threads), so it reads on two threads; results come
    in job order, so the scores are those one reader gives."""
    with open_slide(tiled) as reader:
        grid, _ = _setup(reader, LesionFractionModel())
        geometry, tissue = grid.geometry, grid.tissue
        monkeypatch.setattr(
            screening, "SCREEN_BLOCK", 8
        )  # 24 regions, not this slide's one
        one = run_screen(reader, geometry, tissue, ScreenFraction(), read_threads=1)
        # the first two reads wait for each other: only two readers at once get past it
        both = threading.Barrier(2, timeout=WAIT_S)
        passed: list[bool] = []
        original = RegionCutter.read_timed

        def meeting(self, job):
            if len(passed) < 2:
                try:
                    both.wait()
                    passed.append(True)
                except threading.BrokenBarrierError:
                    passed.append(False)
            return original(self, job)

        monkeypatch.setattr(RegionCutter, "read_timed", meeting)
        two = run_screen(reader, geometry, tissue, ScreenFraction())
        assert passed[:2] == [True, True]  # two reads ran at once
        np.testing.assert_array_equal(one.probability, two.probability)
        np.testing.assert_array_equal(one.failed, two.failed)
