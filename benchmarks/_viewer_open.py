"""Open to first complete paint, against one raw OpenSlide read of the same region.

A run: construct a ``SlideTab`` (open, loader threads, view) with a fresh cache,
show it at 1920x1080, then process events until the view emits ``frameComplete`` for the
wanted viewport. The baseline, measured in the same loop: a fresh ``openslide.OpenSlide``
handle and one ``read_region`` of the visible part of the slide at the level the viewer
chose (``np.asarray`` included). Every run uses fresh handles, so OpenSlide's own tile cache
is cold; the OS file cache is warm after the first run.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import openslide

from _common import MIB, VIEW_H, VIEW_W, Summary, close_tab, open_tab, pump_until
from _slides import BenchSlide

CACHE_BYTES = 512 * MIB  # the application's default cache
TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class Region:
    """The visible part of the slide at one level: what a raw read must fetch."""

    level: int
    l0_x: int
    l0_y: int
    lv_w: int
    lv_h: int
    tiles: int  # viewer tiles (512 px) covering it


@dataclasses.dataclass(frozen=True)
class OpenResult:
    slide: str
    view: str
    region: Region
    runs: int
    first_run_ms: float  # the first run in the process (one-time Qt and font set-up included)
    tab_ms: Summary  # SlideTab constructed: open + threads + widgets (the thumbnail is read later)
    first_paint_ms: Summary  # a frame (thumbnail fallback) is on screen
    complete_ms: Summary  # every visible tile drawn at the right level
    raw_open_read_ms: Summary  # baseline: fresh OpenSlide handle + one read_region
    raw_read_ms: Summary  # the read_region part alone
    thumbnail_ms: Summary  # SlideReader.overview(1024) alone: read on a loader thread after the visible tiles

    @property
    def ratio(self) -> float:
        return self.complete_ms.median_ms / self.raw_open_read_ms.median_ms

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["ratio_complete_vs_raw"] = self.ratio
        return out


def _viewports(dims: tuple[int, int]):
    from histoviewer.core.tiles.viewport import Viewport, fit_viewport

    w, h = dims
    return {
        "fit": fit_viewport(w, h, VIEW_W, VIEW_H),
        "1:1 centre": Viewport(w / 2.0, h / 2.0, 1.0, VIEW_W, VIEW_H),
    }


def region_for(path: Path, viewport) -> Region:
    """The level and level-pixel rectangle the viewer draws for ``viewport``."""
    from histoviewer.core.slide import open_slide
    from histoviewer.core.tiles.geometry import LevelTiling

    with open_slide(path) as reader:
        tiling = LevelTiling(reader.info)
        w, h = reader.info.dimensions
        x0, y0, x1, y1 = viewport.l0_rect
        x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
        level = tiling.best_level(viewport.l0_per_screen_px)
        ds = reader.info.level_downsamples[level]
        tiles = len(tiling.tiles_in_l0_rect(level, x0, y0, x1, y1))
    return Region(level, math.floor(x0), math.floor(y0), math.ceil((x1 - x0) / ds), math.ceil((y1 - y0) / ds), tiles)


def _viewer_once(app, path: Path, viewport) -> tuple[float, float, float]:
    """(tab constructed, first paint, complete) in seconds from the start of the open."""
    from histoviewer.core.tiles.cache import ByteBoundedCache

    cache = ByteBoundedCache(CACHE_BYTES)
    t0 = time.perf_counter()
    tab = open_tab(path, cache)
    t_tab = time.perf_counter()
    view = tab.view
    marks: dict[str, float] = {}

    def on_complete() -> None:
        if view.viewport == viewport and "complete" not in marks:
            marks["complete"] = time.perf_counter()

    view.frameComplete.connect(on_complete)
    if view.viewport != viewport:  # fit is what the tab shows by itself
        view.set_viewport(viewport)

    def done() -> bool:
        if "paint" not in marks and view.last_plan is not None:
            marks["paint"] = time.perf_counter()
        return "complete" in marks

    try:
        if not pump_until(app, done, TIMEOUT_S):
            raise RuntimeError(f"{path}: no complete frame within {TIMEOUT_S} s")
    finally:
        close_tab(app, tab)
    return t_tab - t0, marks.get("paint", marks["complete"]) - t0, marks["complete"] - t0


def _raw_once(path: Path, region: Region) -> tuple[float, float]:
    """(open + read, read) seconds with a fresh handle."""
    t0 = time.perf_counter()
    slide = openslide.OpenSlide(str(path))
    t1 = time.perf_counter()
    pixels = np.asarray(slide.read_region((region.l0_x, region.l0_y), region.level, (region.lv_w, region.lv_h)))
    t2 = time.perf_counter()
    slide.close()
    assert pixels.shape == (region.lv_h, region.lv_w, 4)
    return t2 - t0, t2 - t1


def _thumbnail_once(path: Path) -> float:
    """``SlideReader.overview(THUMBNAIL_MAX_SIDE)``: the session's thumbnail, read on a loader thread."""
    from histoviewer.core.slide import open_slide
    from histoviewer.core.tiles.session import THUMBNAIL_MAX_SIDE

    with open_slide(path) as reader:
        t0 = time.perf_counter()
        reader.overview(THUMBNAIL_MAX_SIDE)
        return time.perf_counter() - t0


def bench_open(app, slide: BenchSlide, runs: int, first_run: dict) -> list[OpenResult]:
    """Both views of one slide, runs interleaved with their baselines.

    ``first_run`` is shared across slides: the very first viewer open in the process pays
    one-time costs (fonts, paint engine), so it is kept out of the medians and reported.
    """
    from histoviewer.core.slide import open_slide

    with open_slide(slide.path) as reader:
        dims = reader.info.dimensions
    results = []
    for name, viewport in _viewports(dims).items():
        region = region_for(slide.path, viewport)
        if not first_run:
            first_run["ms"] = _viewer_once(app, slide.path, viewport)[2] * 1e3
            first_run["what"] = f"{slide.label}, {name}"
            first_ms = first_run["ms"]
        else:
            first_ms = math.nan
        tab, paint, complete, raw, raw_read, thumb = [], [], [], [], [], []
        for _ in range(runs):
            t_tab, t_paint, t_complete = _viewer_once(app, slide.path, viewport)
            r_all, r_read = _raw_once(slide.path, region)
            tab.append(t_tab)
            paint.append(t_paint)
            complete.append(t_complete)
            raw.append(r_all)
            raw_read.append(r_read)
            thumb.append(_thumbnail_once(slide.path))
        results.append(OpenResult(
            slide=slide.label, view=name, region=region, runs=runs, first_run_ms=first_ms,
            tab_ms=Summary.of_seconds(tab), first_paint_ms=Summary.of_seconds(paint),
            complete_ms=Summary.of_seconds(complete), raw_open_read_ms=Summary.of_seconds(raw),
            raw_read_ms=Summary.of_seconds(raw_read), thumbnail_ms=Summary.of_seconds(thumb),
        ))
    return results
