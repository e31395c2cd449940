"""Resident memory during minutes of scripted panning and zooming over a large slide.

The script imitates a reader: drags (40 px per frame in one direction for 0.3-1.5 s), wheel
zooms of 1-3 notches at a random point (kept between fit and 2 screen px per level-0 px),
and now and then a jump elsewhere (a click on the overview). 60 frames/s; each frame is one
input call and a synchronous flush of the update it caused, then event processing until the
frame slot ends. A seeded ``random.Random`` makes the walk repeatable.

RSS is sampled every ``sample_s`` seconds with psutil. "start" is after the slide is open and
its first frame is complete; "warm" is at the end of the first quarter of the run (the cache
has filled by then); the slope is a least-squares fit over the second half.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time

from PySide6.QtCore import QEvent, QPointF

from _common import MIB, VIEW_H, VIEW_W, Summary, close_tab, open_tab, pump_for, pump_until, rss_mib, slope_per_minute
from _slides import BenchSlide

FRAME_S = 1 / 60
MAX_SCALE = 2.0


@dataclasses.dataclass(frozen=True)
class MemorySample:
    t_s: float
    rss_mib: float
    cache_mib: float
    cache_entries: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class MemoryResult:
    slide: str
    minutes: float
    cache_capacity_mib: float
    rss_before_open_mib: float
    rss_start_mib: float
    rss_warm_mib: float
    rss_max_mib: float
    rss_end_mib: float
    slope_last_half_mib_per_min: float
    cache_end_mib: float
    cache_max_mib: float
    frames: int
    frame_ms: Summary
    tiles_loaded: int
    evictions: int
    samples: tuple[MemorySample, ...]

    @property
    def excess_mib(self) -> float:
        """Peak RSS above the start, beyond what the cache itself was allowed to hold."""
        return self.rss_max_mib - self.rss_start_mib - self.cache_capacity_mib

    def to_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "samples"}
        out["excess_mib"] = self.excess_mib
        out["samples"] = [s.to_dict() for s in self.samples]
        return out


class _Walker:
    """Produces the next input for the view, gesture by gesture."""

    def __init__(self, view, dims: tuple[int, int], fit: float, seed: int) -> None:
        self.view, self.dims, self.fit = view, dims, fit
        self.rng = random.Random(seed)
        self.frames_left = 0
        self.drag = (0.0, 0.0)

    def step(self) -> None:
        rng, view = self.rng, self.view
        if self.frames_left > 0:
            self.frames_left -= 1
            view.pan_by(*self.drag)
            return
        r = rng.random()
        if r < 0.70:  # start a drag
            angle = rng.uniform(0, 2 * math.pi)
            self.drag = (40 * math.cos(angle), 40 * math.sin(angle))
            self.frames_left = rng.randint(18, 90)
        elif r < 0.97:  # wheel zoom at a random point
            notches = rng.randint(1, 3) * rng.choice((-1, 1))
            factor = 1.25**notches
            scale = view.viewport.scale
            if scale * factor > MAX_SCALE or scale * factor < self.fit:
                factor = 1 / factor
            view.zoom_by(factor, QPointF(rng.uniform(0, VIEW_W), rng.uniform(0, VIEW_H)))
        else:  # jump elsewhere, as a click on the overview does
            view.center_on(rng.uniform(0, self.dims[0]), rng.uniform(0, self.dims[1]))


def bench_memory(app, slide: BenchSlide, minutes: float, cache_mib: int, sample_s: float, seed: int = 0,
                 progress: bool = False) -> MemoryResult:
    from histoviewer.core.tiles.cache import ByteBoundedCache
    from histoviewer.core.tiles.viewport import Viewport, fit_scale

    rss_before = rss_mib()
    cache = ByteBoundedCache(cache_mib * MIB)
    tab = open_tab(slide.path, cache)
    try:
        view = tab.view
        dims = tab.session.info.dimensions
        view.set_viewport(Viewport(dims[0] / 2, dims[1] / 2, 1.0, VIEW_W, VIEW_H))
        pump_until(app, lambda: view.last_plan is not None and view.last_plan.complete, 60)
        window = view.window()
        walker = _Walker(view, dims, fit_scale(*dims, VIEW_W, VIEW_H), seed)
        t_start = time.perf_counter()
        samples = [MemorySample(0.0, rss_mib(), cache.size_bytes / MIB, len(cache))]
        next_sample = t_start + sample_s
        duration = minutes * 60.0
        frame_times = []
        while True:
            start = time.perf_counter()
            if start - t_start >= duration:
                break
            walker.step()
            app.sendPostedEvents(window, QEvent.Type.UpdateRequest)  # paint now, as the event loop would
            frame_times.append(time.perf_counter() - start)
            pump_for(app, max(0.0, start + FRAME_S - time.perf_counter()))
            if time.perf_counter() >= next_sample:
                next_sample += sample_s
                samples.append(MemorySample(time.perf_counter() - t_start, rss_mib(), cache.size_bytes / MIB, len(cache)))
                if progress:
                    s = samples[-1]
                    print(f"  memory t={s.t_s:6.0f} s rss={s.rss_mib:7.1f} MiB cache={s.cache_mib:6.1f} MiB "
                          f"({s.cache_entries} tiles) frames={len(frame_times)}", flush=True)
        samples.append(MemorySample(time.perf_counter() - t_start, rss_mib(), cache.size_bytes / MIB, len(cache)))
        stats = tab.session.loader.stats
        loaded, evictions = stats.loaded, cache.evictions
    finally:
        close_tab(app, tab)
    warm = min(samples, key=lambda s: abs(s.t_s - duration / 4))
    half = [s for s in samples if s.t_s >= duration / 2]
    return MemoryResult(
        slide=slide.label, minutes=minutes, cache_capacity_mib=float(cache_mib),
        rss_before_open_mib=rss_before, rss_start_mib=samples[0].rss_mib, rss_warm_mib=warm.rss_mib,
        rss_max_mib=max(s.rss_mib for s in samples), rss_end_mib=samples[-1].rss_mib,
        slope_last_half_mib_per_min=slope_per_minute([s.t_s for s in half], [s.rss_mib for s in half]),
        cache_end_mib=samples[-1].cache_mib, cache_max_mib=max(s.cache_mib for s in samples),
        frames=len(frame_times), frame_ms=Summary.of_seconds(frame_times), tiles_loaded=loaded,
        evictions=evictions, samples=tuple(samples),
    )
