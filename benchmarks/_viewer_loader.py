"""Tile loader throughput against raw OpenSlide reads of the same tiles, in the same run.

The tiles: every 512 px level-0 tile of a block at the slide's centre (up to ``side`` x
``side``). Variants, each with a fresh OpenSlide handle (cold OpenSlide cache, warm OS
cache) and, for the loader, a fresh byte cache and threads started before the clock:

- raw 1 thread: ``np.asarray(slide.read_region(...))`` in a loop (the goal's baseline);
- raw 2 threads: the same reads on a two-thread pool (what two cores can do at best);
- loader, 2 workers, ``rgb_to_qimage`` (what the application runs);
- loader, 2 workers, ``keep_array`` (headless);
- loader, 1 worker, ``keep_array`` (the loader's overhead at the raw loop's parallelism).

The order of the variants rotates from one repetition to the next so that drift on a
shared machine does not favour one of them.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide

from _common import MIB
from _slides import BenchSlide

_ids = itertools.count(10_000)  # slide ids that cannot collide with the viewer's


@dataclasses.dataclass(frozen=True)
class LoaderRow:
    variant: str
    tiles: int
    median_s: float
    tiles_per_s: float  # from the median time
    ratio_vs_raw: float  # tiles/s divided by raw 1-thread tiles/s

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LoaderResult:
    slide: str
    level: int
    block: str  # "8x8 tiles at the centre"
    reps: int
    rows: tuple[LoaderRow, ...]

    def row(self, variant: str) -> LoaderRow:
        return next(r for r in self.rows if r.variant == variant)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in dataclasses.asdict(self).items() if k != "rows"},
                "rows": [r.to_dict() for r in self.rows]}


def _block_rects(path: Path, side: int):
    from histoviewer.core.slide import open_slide
    from histoviewer.core.tiles.geometry import LevelTiling

    with open_slide(path) as reader:
        tiling = LevelTiling(reader.info)
        cols, rows = tiling.grid_size(0)
        nx, ny = min(side, cols), min(side, rows)
        x0, y0 = (cols - nx) // 2, (rows - ny) // 2
        keys = [(tx, ty) for ty in range(y0, y0 + ny) for tx in range(x0, x0 + nx)]
        rects = [tiling.tile_rect(0, tx, ty) for tx, ty in keys]
    return keys, rects, f"{nx}x{ny}"


def _raw(path: Path, rects, threads: int) -> float:
    slide = openslide.OpenSlide(str(path))

    def read(rect) -> np.ndarray:
        return np.asarray(slide.read_region((rect.l0_x, rect.l0_y), 0, (rect.lv_width, rect.lv_height)))

    try:
        if threads == 1:
            t0 = time.perf_counter()
            for rect in rects:
                read(rect)
            return time.perf_counter() - t0
        with ThreadPoolExecutor(threads) as pool:
            t0 = time.perf_counter()
            list(pool.map(read, rects))
            return time.perf_counter() - t0
    finally:
        slide.close()


def _loader(path: Path, keys, convert, workers: int) -> float:
    from histoviewer.core.slide import open_slide
    from histoviewer.core.tiles.cache import ByteBoundedCache
    from histoviewer.core.tiles.geometry import LevelTiling, TileKey
    from histoviewer.core.tiles.loader import TileLoader

    reader = open_slide(path)
    slide_id = next(_ids)
    cache = ByteBoundedCache(max(len(keys), 1) * 2 * MIB)
    loader = TileLoader(reader, LevelTiling(reader.info), cache, slide_id, convert=convert, workers=workers)
    tile_keys = [TileKey(slide_id, 0, tx, ty) for tx, ty in keys]
    try:
        t0 = time.perf_counter()
        loader.request(tile_keys)
        if not loader.wait_idle(timeout=600):
            raise RuntimeError(f"{path}: the loader did not finish {len(keys)} tiles in 600 s")
        elapsed = time.perf_counter() - t0
        if loader.stats.loaded != len(keys) or loader.stats.failed:
            raise RuntimeError(f"{path}: loader stats {loader.stats} for {len(keys)} tiles")
        return elapsed
    finally:
        loader.shutdown(wait=True)
        reader.close()


def bench_loader(slide: BenchSlide, side: int, reps: int) -> LoaderResult:
    from histoviewer.core.tiles.loader import keep_array
    from histoviewer.qt.images import rgb_to_qimage

    keys, rects, block = _block_rects(slide.path, side)
    variants: dict[str, Callable[[], float]] = {
        "raw OpenSlide, 1 thread": lambda: _raw(slide.path, rects, 1),
        "raw OpenSlide, 2 threads": lambda: _raw(slide.path, rects, 2),
        "loader, 2 workers, rgb_to_qimage": lambda: _loader(slide.path, keys, rgb_to_qimage, 2),
        "loader, 2 workers, keep_array": lambda: _loader(slide.path, keys, keep_array, 2),
        "loader, 1 worker, keep_array": lambda: _loader(slide.path, keys, keep_array, 1),
    }
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    _raw(slide.path, rects, 1)  # one untimed pass: the OS file cache is warm for everyone
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            times[name].append(variants[name]())
    n = len(keys)
    raw_rate = n / float(np.median(times[names[0]]))
    rows = []
    for name in names:
        med = float(np.median(times[name]))
        rows.append(LoaderRow(name, n, med, n / med, (n / med) / raw_rate))
    return LoaderResult(slide.label, 0, f"{block} tiles of 512 px at the centre", reps, tuple(rows))
