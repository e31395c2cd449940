"""The live AI overlay in the viewer: how fast the heatmap completes after a pan, and what
inference costs the pan itself.

    python benchmarks/bench_heatmap_gui.py [--slide PATH] [--trials 12] [--frames 240]

1. **Pan end -> complete heatmap** at 10x in a 1920 x 1080 view: the view jumps (as a drag
   ends) to a part of the tissue nothing was classified in; the clock runs from the
   release (``interactingChanged(False)``) until every tissue cell in view is classified
   and the view has repainted. Baseline in the same run: the headless pipeline
   (``classify_cells``) on the same number of cells, i.e. the least that work costs.
2. **Pan frames with inference running**: drags of 40 screen px per frame at 60 frames/s,
   in bursts with pauses in between (each release resumes the worker; the next burst
   starts while it is busy), at 10x with the tiles preloaded, so the only difference
   between the two runs is the overlay. Baseline: the same drags with no overlay.

The default CNN on the CPU (``--device``), no disk cache (every trial classifies afresh).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    MIB, VIEW_H, VIEW_W, Summary, close_tab, machine_info, open_tab, pump_for, pump_until, qt_app,
)

DEFAULT_SLIDE = Path("/tmp/histoviewer-bench/phantom-100k-200k.tiff")
MAGNIFICATION = 10.0
FRAME_S = 1 / 60
STEP_PX = 40


def _start(app, tab, background: bool, device: str):
    from histoviewer.core.inference.live import LiveOptions
    from histoviewer.core.colormaps import colormap_lut
    from histoviewer.core.inference.overlay import HeatmapStyle

    tab.start_heatmap(LiveOptions(model="cnn", device=device, background=background, use_cache=False),
                      HeatmapStyle(colormap_lut("viridis")))
    if not pump_until(app, lambda: tab.heatmap.paintable or tab.heatmap_error, 120):
        raise RuntimeError("the overlay did not start in 120 s")
    if tab.heatmap_error:
        raise RuntimeError(tab.heatmap_error)
    return tab.heatmap.live


def _ten_x_scale(tab) -> float:
    base = tab.session.info.base_magnification
    if base is None:
        raise RuntimeError("the slide states no magnification")
    return MAGNIFICATION / base


def _tissue_centres(live, scale: float, count: int, seed: int = 0) -> list[tuple[float, float]]:
    """View centres at 10x whose views are at least half tissue and do not overlap."""
    g = live.grid.geometry
    rng = random.Random(seed)
    tissue = live.grid.tissue
    w_l0, h_l0 = VIEW_W / scale, VIEW_H / scale
    chosen: list[tuple[float, float]] = []
    candidates = [int(c) for c in (tissue.reshape(-1).nonzero()[0])]
    rng.shuffle(candidates)
    for cell in candidates:
        x, y = g.cell_l0_xy([cell])
        cx, cy = float(x[0]), float(y[0])
        if not (w_l0 / 2 <= cx <= g.l0_width - w_l0 / 2 and h_l0 / 2 <= cy <= g.l0_height - h_l0 / 2):
            continue
        if any(abs(cx - ox) < w_l0 * 1.2 and abs(cy - oy) < h_l0 * 1.2 for ox, oy in chosen):
            continue
        cells = g.cells_in_rect(cx - w_l0 / 2, cy - h_l0 / 2, w_l0, h_l0)
        if tissue.reshape(-1)[cells].mean() < 0.5:
            continue
        chosen.append((cx, cy))
        if len(chosen) == count:
            break
    return chosen


def bench_pan_to_heatmap(app, slide: Path, trials: int, device: str) -> dict:
    from histoviewer.core.inference.pipeline import classify_cells
    from histoviewer.core.inference.regions import RegionCutter
    from histoviewer.core.tiles.cache import ByteBoundedCache
    from histoviewer.core.tiles.viewport import Viewport

    tab = open_tab(slide, ByteBoundedCache(512 * MIB))
    try:
        live = _start(app, tab, background=False, device=device)
        view = tab.view
        scale = _ten_x_scale(tab)
        centres = _tissue_centres(live, scale, 2 * trials + 1)
        times: dict[str, list[float]] = {"jump": [], "drag end": []}
        cells_in_view = []
        for i, (cx, cy) in enumerate(centres):
            # "jump": the view lands on tissue never shown, its tiles load while the overlay
            # works; "drag end": a drag brought the tiles on screen before the release.
            variant = "jump" if i % 2 else "drag end"
            view._mark_moving()  # a drag is under way: the worker holds
            view.set_viewport(Viewport(cx, cy, scale, VIEW_W, VIEW_H))
            pump_for(app, 0.05)
            if variant == "drag end":
                pump_until(app, lambda: view.last_plan is not None and view.last_plan.complete, 30)
                view._mark_moving()  # (waiting for the tiles may have let the idle timer fire)
            rect = view.viewport.l0_xywh
            pending = len(live.grid.pending(live.grid.geometry.cells_in_rect(*rect)))
            t0 = time.perf_counter()
            view._idle_timer.stop()
            view._on_idle()  # the mouse button is released
            ok = pump_until(app, lambda: live.coverage(rect) >= 1.0, 60, nap_s=0.004)
            view.repaint()  # the frame that shows the last cells
            elapsed = time.perf_counter() - t0
            if not ok:
                raise RuntimeError("the view's heatmap did not complete in 60 s")
            if i == 0:
                continue  # warm-up (first batches pay one-off costs)
            times[variant].append(elapsed)
            cells_in_view.append(pending)
        # The least the same work costs: the headless pipeline on as many fresh cells.
        n = int(sum(cells_in_view) / len(cells_in_view))
        fresh = live.grid.pending()[: n * 4]
        cutter = RegionCutter(tab.session.reader, live.grid.geometry)
        bound = []
        for k in range(3):
            chunk = fresh[k * n:(k + 1) * n]
            t0 = time.perf_counter()
            classify_cells(live.grid, cutter, live.model, chunk, batch_size=512, block=8)
            bound.append(time.perf_counter() - t0)
        source = live.region_source
        return {
            "scale": scale, "trials": {k: len(v) for k, v in times.items()}, "cells_in_view": cells_in_view,
            "cells_in_view_mean": sum(cells_in_view) / len(cells_in_view),
            "pan_end_to_complete_ms": {k: Summary.of_seconds(v).to_dict() for k, v in times.items()},
            "tiles_reused_from_viewer": getattr(source, "tiles_reused", None),
            "tiles_decoded_for_inference": getattr(source, "tiles_read", None),
            "torch_threads": live.torch_threads,
            "headless_same_cells_ms": Summary.of_seconds(bound).to_dict(),
            "startup_s": {k: round(v, 3) for k, v in live.startup_s.items()},
        }
    finally:
        close_tab(app, tab)


def _drag(app, tab, frames: int, bursts: int) -> tuple[list[float], int]:
    from PySide6.QtCore import QEvent

    view, window = tab.view, tab.view.window()
    times, busy_frames = [], 0
    direction = 1
    for b in range(bursts):
        for _ in range(frames // bursts):
            start = time.perf_counter()
            view.pan_by(-direction * STEP_PX, 0)
            app.sendPostedEvents(window, QEvent.Type.UpdateRequest)
            times.append(time.perf_counter() - start)
            if tab.heatmap is not None and not tab.heatmap.live.is_idle:
                busy_frames += 1
            pump_for(app, max(0.0, start + FRAME_S - time.perf_counter()))
        view._idle_timer.stop()
        view._on_idle()  # release: the worker resumes
        pump_for(app, 0.35)  # the next burst starts while it classifies
        direction = -direction
    return times, busy_frames


def bench_pan_frames(app, slide: Path, frames: int, bursts: int, device: str) -> dict:
    from histoviewer.core.tiles.cache import ByteBoundedCache
    from histoviewer.core.tiles.viewport import Viewport

    out = {}
    for mode in ("no overlay", "overlay, background on", "no overlay", "overlay, background on"):
        tab = open_tab(slide, ByteBoundedCache(768 * MIB))
        try:
            scale = _ten_x_scale(tab)
            info = tab.session.info
            start = Viewport(info.dimensions[0] / 2, info.dimensions[1] / 2, scale, VIEW_W, VIEW_H)
            tab.view.set_viewport(start)
            # preload the drag's tiles (back and forth over the same strip)
            span = frames // bursts * STEP_PX / scale
            for dx in range(0, int(span) + VIEW_W, 256):
                tab.view.set_viewport(Viewport(start.l0_cx + dx / scale, start.l0_cy, scale, VIEW_W, VIEW_H))
                tab.view.repaint()
                pump_until(app, lambda: tab.view.last_plan is not None and tab.view.last_plan.complete, 30)
            tab.view.set_viewport(start)
            tab.view.repaint()
            busy = 0
            if mode.startswith("overlay"):
                live = _start(app, tab, background=True, device=device)
                pump_until(app, lambda: live.coverage() > 0.002, 60)
            times, busy = _drag(app, tab, frames, bursts)
            key = mode
            prev = out.get(key, {"times": [], "busy": 0})
            out[key] = {"times": prev["times"] + times, "busy": prev["busy"] + busy}
        finally:
            close_tab(app, tab)
    return {k: {"frames": len(v["times"]), "frame_ms": Summary.of_seconds(v["times"]).to_dict(),
                "frames_while_worker_busy": v["busy"]} for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slide", type=Path, default=DEFAULT_SLIDE)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--bursts", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if not args.slide.exists():
        print(f"{args.slide}: missing; make it with `histoviewer phantom {args.slide} --width 100000 "
              "--height 200000 --mpp 0.25`", file=sys.stderr)
        return 2
    os.environ.setdefault("HISTOVIEWER_DATA_DIR", tempfile.mkdtemp(prefix="hv-bench-data-"))
    app = qt_app()
    load = os.getloadavg()
    result = {"machine": machine_info(), "slide": str(args.slide), "load_before": load,
              "pan_to_heatmap": bench_pan_to_heatmap(app, args.slide, args.trials, args.device),
              "pan_frames": bench_pan_frames(app, args.slide, args.frames, args.bursts, args.device),
              "load_after": os.getloadavg()}
    p = result["pan_to_heatmap"]
    print(f"slide {args.slide.name}, 10x (scale {p['scale']:.3f}), view {VIEW_W}x{VIEW_H}, load {load[0]:.1f}")
    print(f"pan end -> complete heatmap (goal < 300 ms), {p['cells_in_view_mean']:.0f} tissue cells in view on "
          f"average, torch threads {p['torch_threads']}; headless pipeline on as many cells: median "
          f"{p['headless_same_cells_ms']['median_ms']:.0f} ms")
    for variant, t in p["pan_end_to_complete_ms"].items():
        print(f"  {variant}: {t['n']} trials, median {t['median_ms']:.0f} ms, p95 {t['p95_ms']:.0f} ms, "
              f"max {t['max_ms']:.0f} ms")
    print(f"  tiles reused from the viewer's cache {p['tiles_reused_from_viewer']}, decoded for the overlay "
          f"{p['tiles_decoded_for_inference']}")
    for mode, r in result["pan_frames"].items():
        f = r["frame_ms"]
        print(f"pan frames, {mode}: {r['frames']} frames, median {f['median_ms']:.2f} ms, p95 {f['p95_ms']:.2f} ms, "
              f"max {f['max_ms']:.2f} ms; frames while the worker was busy: {r['frames_while_worker_busy']}")
    print(f"load after: {result['load_after'][0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
