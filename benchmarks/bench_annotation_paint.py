"""Benchmark: the slide view's frame time while panning with 0, 5,000 and 20,000 annotations.

    .venv/bin/python benchmarks/bench_annotation_paint.py [--slide PATH] [--counts 5000 20000]

A ``SlideTab`` (1920x1080 view, offscreen) on a 28,000 px phantom (the demo slide when it is
there, else one written with ``write_phantom``) carries N lesion-like polygons spread over
the slide (90 % small: 20-60 vertices, 10-200 px radius; 9 % medium: 100-500 vertices, up to
2,500 px; 1 % large: 2,000 vertices). For each N, in the same run and on the same scripted
drags, it times:

- ``drag``: ``view.pan_by(40 px)`` then the pending paint flushed (what a mouse drag does:
  the painted pixels scroll, and only the exposed strip is repainted, annotations included);
- ``repaint``: a full ``view.repaint()`` per frame (a jump or zoom: everything in view);

at 1:1 (1 screen px per level-0 px), at 4 level-0 px per screen px, and with the whole slide
in view (fit, where most shapes are below 3 screen px and become dots). Tiles are loaded
before timing, so frame times are the painting's own. N = 0 is the baseline: the same frames
with an empty annotation layer. ``layer_ms`` is the annotation layer's share of each frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, Summary, close_tab, fmt, machine_info, open_tab, pump_for, qt_app, table  # noqa: F401
from _viewer_pan import _preload as preload  # noqa: E402

import numpy as np  # noqa: E402

DEMO_SLIDE = Path("/tmp/hv/demo-training/test/phantom-201.tiff")
FRAMES = 60
STEP_PX = 40
CLASSES = ("Tumor", "Suspect", "Normal", "Other")


def blob(rng, n: int, radius: float, w: int, h: int) -> np.ndarray:
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    k, phase = rng.integers(2, 7), rng.uniform(0, 2 * np.pi)
    r = radius * (0.8 + 0.15 * np.sin(k * theta + phase) + 0.01 * rng.random(n))
    cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
    return np.round(np.column_stack([cx + r * np.cos(theta), cy + r * np.sin(theta)]), 2)


def make_annotations(n: int, w: int, h: int, seed: int):
    from histoviewer.core.annotations import Annotation, ShapeKind

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        u = rng.random()
        if u < 0.90:
            pts = blob(rng, int(rng.integers(20, 61)), rng.uniform(10, 200), w, h)
        elif u < 0.99:
            pts = blob(rng, int(rng.integers(100, 501)), rng.uniform(250, 2500), w, h)
        else:
            pts = blob(rng, 2000, rng.uniform(2500, 5000), w, h)
        out.append(Annotation(ShapeKind.POLYGON, pts, class_name=CLASSES[i % 4], name=f"a{i}"))
    return out


def drag_viewports(dims, scale: float, frames: int):
    """A horizontal back-and-forth drag through the slide's middle (as bench_viewer's)."""
    from histoviewer.core.tiles.viewport import Viewport

    w, h = dims
    half = 1920 / 2 / scale
    lo, hi = min(half, w / 2), max(w - half, w / 2)
    step_l0 = STEP_PX / scale
    vp = Viewport(max(lo, w / 2 - frames * step_l0 / 2), h / 2, scale, 1920, 1080)
    viewports, steps, direction = [vp], [], 1
    for _ in range(frames):
        if not lo <= vp.l0_cx + direction * step_l0 <= hi:
            direction = -direction
        steps.append((-direction * STEP_PX, 0))
        vp = vp.panned(*steps[-1])
        viewports.append(vp)
    return viewports, steps


class _Timed:
    """Wraps the layer's ``paint`` to add up its time per frame."""

    def __init__(self, layer) -> None:
        self.layer, self.total = layer, 0.0

    def paint(self, painter, viewport, region) -> None:
        t = time.perf_counter()
        self.layer.paint(painter, viewport, region)
        self.total += time.perf_counter() - t


def run_frames(app, tab, viewports, steps, mode: str):
    from PySide6.QtCore import QEvent

    view, timed = tab.view, tab.view.layers[-1]
    frame, layer = [], []
    view.set_viewport(viewports[0])
    view.repaint()
    for vp, step in zip(viewports[1:], steps):
        timed.total = 0.0
        t = time.perf_counter()
        if mode == "drag":
            view.pan_by(*step)
            app.sendPostedEvents(view.window(), QEvent.Type.UpdateRequest)
        else:
            view.set_viewport(vp)
            view.repaint()
        frame.append(time.perf_counter() - t)
        layer.append(timed.total)
        pump_for(app, 0.002)
    return Summary.of_seconds(frame), Summary.of_seconds(layer), tab.annotation_layer.last_shapes_drawn


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slide", type=Path, default=None)
    ap.add_argument("--counts", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--frames", type=int, default=FRAMES)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    app = qt_app()
    from histoviewer.core.tiles.cache import ByteBoundedCache
    from histoviewer.core.tiles.viewport import fit_scale

    tmp = Path(tempfile.mkdtemp(prefix="bench-annot-"))
    source = args.slide or (DEMO_SLIDE if DEMO_SLIDE.exists() else None)
    if source is None:
        from histoviewer.core.phantom import write_phantom

        source = tmp / "phantom-28k.tiff"
        write_phantom(source, width=28000, height=28000, mpp=0.25, seed=201)
    slide = tmp / source.name  # linked: the tab's autosave must not land beside the original
    slide.symlink_to(source.resolve())
    tab = open_tab(slide, ByteBoundedCache(1024 * 2**20))
    tab.view.rough_while_moving = False  # like with like: every frame smooth
    tab.annotation_layer_timed = _Timed(tab.annotation_layer)
    tab.view.layers[-1] = tab.annotation_layer_timed
    dims = tab.session.info.dimensions
    zooms = {"1:1": 1.0, "4 px/px": 0.25, "fit": fit_scale(*dims, 1920, 1080)}
    scripts = {z: drag_viewports(dims, s, args.frames) for z, s in zooms.items()}
    for viewports, _ in scripts.values():
        preload(app, tab, viewports)  # the pan benchmark's: every tile the drag shows, loaded
    rows, results = [], []
    doc = tab.annotations
    all_anns = make_annotations(max(args.counts), *dims, seed=7)
    for n in [0, *sorted(args.counts)]:
        if n > len(doc):
            doc.add_many(all_anns[len(doc):n])
        for zoom, (viewports, steps) in scripts.items():
            for mode in ("drag", "repaint"):
                if zoom == "fit" and mode == "drag":
                    continue  # the whole slide is in view: there is nothing to pan
                run_frames(app, tab, viewports[:6], steps[:5], mode)  # warm the LOD cache
                frame, layer, shapes = run_frames(app, tab, viewports, steps, mode)
                results.append({"annotations": n, "zoom": zoom, "mode": mode, "frame_ms": frame.to_dict(),
                                "layer_ms": layer.to_dict(), "shapes_last_frame": shapes})
                rows.append([n, zoom, mode, fmt(frame.median_ms, 2), fmt(frame.p95_ms, 2),
                             fmt(layer.median_ms, 2), fmt(layer.p95_ms, 2), shapes])
    close_tab(app, tab)
    base = {(r["zoom"], r["mode"]): r["frame_ms"]["median_ms"] for r in results if r["annotations"] == 0}
    for row, r in zip(rows, results):
        row.insert(5, fmt(r["frame_ms"]["median_ms"] / max(base[(r["zoom"], r["mode"])], 1e-6), 2))
    if args.json:
        print(json.dumps({"machine": machine_info(), "slide": str(source), "results": results}, indent=1))
    else:
        print(table(f"Annotation layer while panning ({source.name}, {dims[0]}x{dims[1]}, 1920x1080 view)",
                    ["annotations", "zoom", "mode", "frame p50 ms", "frame p95 ms", "x no-annotation p50",
                     "layer p50 ms", "layer p95 ms", "shapes in last paint"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
