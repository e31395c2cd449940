"""The direct TIFF reader decodes each tile once while it stays in its cache (issue 15: the
blocks of an analysis share the tiles along their edges, which were decoded again for each
block) and returns the same pixels as without the cache."""

from __future__ import annotations

import numpy as np

from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.regions import RegionCutter, plan_regions
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.slide import open_slide


def _tiles_touched(source: TiffRegionSource, level: int, boxes) -> set[int]:
    page = source._pages[level]
    th, tw = page.tilelength, page.tilewidth
    across = -(-page.shape[1] // tw)
    touched = set()
    for x, y, w, h in boxes:
        for ty in range(y // th, (y + h - 1) // th + 1):
            for tx in range(x // tw, (x + w - 1) // tw + 1):
                touched.add(ty * across + tx)
    return touched


def test_overlapping_reads_decode_each_tile_once_with_the_same_pixels(cmu_small):
    with open_slide(cmu_small) as reader:
        cached = TiffRegionSource.open(cmu_small, reader, tile_cache_bytes=64 << 20)
        plain = TiffRegionSource.open(cmu_small, reader, tile_cache_bytes=0)
        assert cached is not None and plain is not None
        try:
            # level-0 boxes that share tiles along their edges (the slide's tiles are 240 px)
            boxes = [(0, 0, 700, 500), (600, 0, 700, 500), (300, 400, 900, 600), (0, 0, 1300, 1000)]
            for x, y, w, h in boxes:
                a = cached.read_region(x, y, 0, w, h)
                b = plain.read_region(x, y, 0, w, h)
                assert np.array_equal(a, b)
            touched = _tiles_touched(cached, 0, boxes)
            assert cached.tiles_decoded == len(touched)
            assert plain.tiles_decoded > len(touched)  # without the cache, shared tiles are decoded again
        finally:
            cached.close()
            plain.close()


def test_a_small_cache_keeps_its_bound_and_still_reads_right(cmu_small):
    with open_slide(cmu_small) as reader:
        source = TiffRegionSource.open(cmu_small, reader, tile_cache_bytes=3 * 240 * 240 * 3)
        assert source is not None
        try:
            region = source.read_region(0, 0, 0, 1200, 900)  # 5 x 4 tiles through a 3-tile cache
            assert source._cache_bytes <= 3 * 240 * 240 * 3 and len(source._cache) <= 3
            assert np.array_equal(region, reader.read_region(0, 0, 0, 1200, 900))
        finally:
            source.close()


def test_patches_of_an_analysis_are_the_same_with_the_cache(cmu_small):
    with open_slide(cmu_small) as reader:
        geometry = GridGeometry.for_slide(reader.info.dimensions, reader.info.mpp, 0.972, 96)
        jobs = plan_regions(geometry, np.arange(geometry.rows * geometry.cols), block=4)
        sources = [TiffRegionSource.open(cmu_small, reader, tile_cache_bytes=n) for n in (64 << 20, 0)]
        try:
            cached, plain = (RegionCutter(reader, geometry, source=s) for s in sources)
            for job in jobs:
                assert np.array_equal(cached(job), plain(job))
            assert sources[0].tiles_decoded < sources[1].tiles_decoded
        finally:
            for s in sources:
                s.close()
