"""Frame time while panning: a scripted drag of 40 screen px per frame at 60 frames/s.

Two ways to produce a frame, both timed from the input to pixels in the backing store:

- drag: ``view.pan_by(dx, dy)`` (what a mouse drag calls; it may scroll the painted pixels
  and repaint only the exposed strip) then the pending update is flushed synchronously
  (``sendPostedEvents(window, UpdateRequest)``);
- repaint: ``view.set_viewport(vp)`` then a synchronous full ``view.repaint()``: what every
  frame costs when the view cannot scroll (zooming, jumps), and the brief's literal recipe.

Between frames the script processes events until the 16.7 ms frame slot ends, as a drag
would, so tile-loaded signals are delivered and may trigger extra paints (counted, not timed).

warm: every tile the drag will show, its prefetch ring and the next coarser level are loaded
before the drag starts (the loader then has nothing to do). cold: a fresh tab and cache, the
drag starts as soon as the first frame is on screen; we count frames drawn with fallback and
time how long after the last frame the view becomes complete.

Each frame is also timed in CPU time of the whole process (``time.process_time``: the GUI
thread and Qt's helper threads; the loader is idle in warm drags): on a shared machine the
wall-clock tail includes waiting for a core while other jobs run, which the viewer cannot
help; the CPU time shows what the frame itself costs.

Baseline in the same run ("blit floor"): a bare widget of the same size whose paint draws one
prepared 1920x1080 RGB32 QImage, timed the same way: the least a full-window frame can cost
on this machine and Qt platform.
"""

from __future__ import annotations

import dataclasses
import time

from PySide6.QtCore import QEvent

from _common import MIB, VIEW_H, VIEW_W, Summary, close_tab, open_tab, pump_for, pump_until
from _slides import BenchSlide

FRAME_S = 1 / 60
STEP_PX = 40
CACHE_BYTES = 512 * MIB
SETTLE_TIMEOUT_S = 60.0
SCENARIOS = (("warm", "drag"), ("warm", "repaint"), ("cold", "drag"))


@dataclasses.dataclass(frozen=True)
class PanResult:
    slide: str
    zoom: str  # "1:1" or "fit x4"
    cache: str  # "warm" or "cold"
    mode: str  # "drag" (pan_by + flush) or "repaint" (set_viewport + full repaint)
    scale: float  # screen px per level-0 px
    level: int
    frames: int
    frame_ms: Summary
    frame_cpu_ms: Summary  # the same frames in process CPU time
    plan_ms: Summary  # SlideSession.plan alone on the same viewports (warm only)
    incomplete_frames: int  # frames drawn with a fallback (coarser level or thumbnail)
    unpainted_frames: int  # frames where no paint happened inside the timed call (should be 0)
    extra_paints: int  # paints between frames (tile arrivals, pending updates)
    tiles_loaded: int  # tiles read during the drag
    settle_ms: float  # end of the last frame to a complete frame (0 when it was complete); worst round

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FloorResult:
    frame_ms: Summary
    frame_cpu_ms: Summary

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def drag_script(dims: tuple[int, int], scale: float, frames: int, step_px: int = STEP_PX):
    """(viewports, screen steps): a horizontal drag through the slide's middle row.

    ``viewports[0]`` is the start and ``viewports[i + 1] == viewports[i].panned(*steps[i])``.
    The view moves right from left of the centre and turns back before it would leave the
    slide, so every frame shows slide rather than background.
    """
    from histoviewer.core.tiles.viewport import Viewport

    w, h = dims
    half = VIEW_W / 2 / scale
    lo, hi = min(half, w / 2), max(w - half, w / 2)
    step_l0 = step_px / scale
    vp = Viewport(max(lo, w / 2 - frames * step_l0 / 2), h / 2, scale, VIEW_W, VIEW_H)
    viewports, steps, direction = [vp], [], 1
    for _ in range(frames):
        if not lo <= vp.l0_cx + direction * step_l0 <= hi:
            direction = -direction
        step = (-direction * step_px, 0)  # dragging left moves the view right
        vp = vp.panned(*step)
        viewports.append(vp)
        steps.append(step)
    return viewports, steps


def _preload(app, tab, viewports) -> None:
    """Load everything the drag will ask for, so the warm drag reads nothing."""
    session = tab.session
    keys: dict = {}
    for vp in viewports:
        plan = session.plan(vp, request=False)
        keys.update(dict.fromkeys(plan.missing + plan.prefetch))
    session.loader.request(list(keys))
    if not session.loader.wait_idle(timeout=600):
        raise RuntimeError("preloading the drag's tiles did not finish in 600 s")
    incomplete = sum(not session.plan(vp, request=False).complete for vp in viewports)
    if incomplete:
        raise RuntimeError(f"{incomplete} warm viewports still miss tiles (cache too small?)")
    pump_for(app, 0.2)  # deliver the loaded signals and their repaints before timing


@dataclasses.dataclass
class _Drag:
    """One drag's raw numbers (seconds), before rounds are pooled into a ``PanResult``."""

    times: list[float]
    cpu_times: list[float]
    incomplete: int
    unpainted: int
    extra: int
    loaded: int = 0
    settle: float = 0.0
    plan_times: list[float] = dataclasses.field(default_factory=list)
    scale: float = 1.0
    level: int = 0


def _frames(app, tab, viewports, steps, mode: str) -> _Drag:
    """Run the paced drag; per-frame times and counters."""
    view = tab.view
    window = view.window()
    times, cpu_times, incomplete, unpainted, extra = [], [], 0, 0, 0
    for vp, step in zip(viewports[1:], steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        before = view.last_plan
        if mode == "drag":
            view.pan_by(*step)
            app.sendPostedEvents(window, QEvent.Type.UpdateRequest)
        else:
            view.set_viewport(vp)
            view.repaint()
        cpu_times.append(time.process_time() - start_cpu)
        times.append(time.perf_counter() - start)
        plan = view.last_plan
        unpainted += plan is before
        incomplete += not plan.complete
        if vp is viewports[-1]:
            break  # the drag has stopped: the caller times how long the view takes to complete
        pump_for(app, max(0.0, start + FRAME_S - time.perf_counter()))
        extra += view.last_plan is not plan
    drift = abs(view.viewport.l0_cx - viewports[-1].l0_cx) * view.viewport.scale
    if drift > 1.0:
        raise RuntimeError(f"the view ended {drift:.1f} screen px away from the scripted drag")
    return _Drag(times, cpu_times, incomplete, unpainted, extra)


def _scenario(app, slide: BenchSlide, cache_state: str, mode: str, zoom: str, frames: int) -> _Drag:
    """One drag with a fresh tab; the raw per-frame numbers."""
    from histoviewer.core.tiles.cache import ByteBoundedCache
    from histoviewer.core.tiles.viewport import fit_scale

    tab = open_tab(slide.path, ByteBoundedCache(CACHE_BYTES))
    try:
        dims = tab.session.info.dimensions
        scale = 1.0 if zoom == "1:1" else 4 * fit_scale(*dims, VIEW_W, VIEW_H)
        viewports, steps = drag_script(dims, scale, frames)
        view = tab.view
        view.set_viewport(viewports[0])
        pump_until(app, lambda: view.last_plan is not None, 30)
        plan_times: list[float] = []
        if cache_state == "warm":
            _preload(app, tab, viewports)
            for vp in viewports:
                t0 = time.perf_counter()
                tab.session.plan(vp)
                plan_times.append(time.perf_counter() - t0)
            view.repaint()
        loaded0 = tab.session.loader.stats.loaded
        run = _frames(app, tab, viewports, steps, mode)
        run.loaded = tab.session.loader.stats.loaded - loaded0
        if not view.last_plan.complete:
            t_stop = time.perf_counter()
            if not pump_until(app, lambda: view.last_plan.complete, SETTLE_TIMEOUT_S):
                raise RuntimeError(f"{slide.label}: view not complete {SETTLE_TIMEOUT_S} s after the drag")
            run.settle = time.perf_counter() - t_stop
        run.plan_times, run.scale, run.level = plan_times, scale, view.last_plan.level
        return run
    finally:
        close_tab(app, tab)


def bench_pan(app, slide: BenchSlide, frames: int, rounds: int = 2) -> list[PanResult]:
    """Every scenario ``rounds`` times, interleaved (drift hits all alike), frames pooled.

    Counters (incomplete frames, extra paints, tiles read) are totals over the rounds; the
    settle time is the worst round.
    """
    runs: dict[tuple[str, str, str], list[_Drag]] = {}
    for _ in range(rounds):
        for cache_state, mode in SCENARIOS:
            for zoom in ("1:1", "fit x4"):
                runs.setdefault((cache_state, mode, zoom), []).append(
                    _scenario(app, slide, cache_state, mode, zoom, frames))
    results = []
    for (cache_state, mode, zoom), rs in runs.items():
        times = [t for r in rs for t in r.times]
        results.append(PanResult(
            slide=slide.label, zoom=zoom, cache=cache_state, mode=mode, scale=rs[0].scale,
            level=rs[0].level, frames=len(times), frame_ms=Summary.of_seconds(times),
            frame_cpu_ms=Summary.of_seconds([t for r in rs for t in r.cpu_times]),
            plan_ms=Summary.of_seconds([t for r in rs for t in r.plan_times]),
            incomplete_frames=sum(r.incomplete for r in rs), unpainted_frames=sum(r.unpainted for r in rs),
            extra_paints=sum(r.extra for r in rs), tiles_loaded=sum(r.loaded for r in rs),
            settle_ms=max(r.settle for r in rs) * 1e3,
        ))
    return results


def bench_blit_floor(app, frames: int) -> FloorResult:
    """One full-window RGB32 drawImage per frame: the cheapest possible frame."""
    from PySide6.QtGui import QColor, QImage, QPainter
    from PySide6.QtWidgets import QWidget

    image = QImage(VIEW_W, VIEW_H, QImage.Format.Format_RGB32)
    image.fill(QColor(230, 200, 220))

    class Floor(QWidget):
        def paintEvent(self, event) -> None:  # noqa: N802 - Qt override
            painter = QPainter(self)
            painter.drawImage(0, 0, image)
            painter.end()

    widget = Floor()
    widget.resize(VIEW_W, VIEW_H)
    widget.show()
    pump_for(app, 0.1)
    times, cpu_times = [], []
    for _ in range(frames):
        start, start_cpu = time.perf_counter(), time.process_time()
        widget.repaint()
        cpu_times.append(time.process_time() - start_cpu)
        times.append(time.perf_counter() - start)
        pump_for(app, max(0.0, start + FRAME_S - time.perf_counter()))
    widget.close()
    widget.deleteLater()
    return FloorResult(Summary.of_seconds(times), Summary.of_seconds(cpu_times))

