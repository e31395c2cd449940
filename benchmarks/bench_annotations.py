"""Benchmark: annotations at scale — what to paint in a 1920x1080 view, edits, file exchange.

    .venv/bin/python benchmarks/bench_annotations.py                 # 5,000 and 20,000 annotations
    .venv/bin/python benchmarks/bench_annotations.py --counts 2000 --json

A CAMELYON-sized slide (100,000 x 200,000 level-0 px) carries N random lesion-like
(smooth, lobed) annotations: 90 %
small polygons (20-60 vertices, 20-400 px across: cells, small foci), 9 % medium (100-500
vertices, up to 5,000 px), 1 % large lesion outlines (2,000 vertices, up to 20,000 px).
For a 1920x1080 screen at 1, 4, 16 and 64 level-0 px per screen px, at 20 random view
positions, it times

- ``indexed``: ``AnnotationDocument.paint_list`` (grid index + level-of-detail outlines,
  cache warm as when panning), and ``cold``: the first paint at a zoom (cache empty);
- ``naive``: the baseline measured in the same run — a Python scan of every annotation's
  (precomputed) bounding box, drawing each hit with its full outline;

and reports the vertices each hands to the painter (what QPainter's cost follows). Then
edits (move + undo with N annotations open) and GeoJSON / ASAP XML export and import of
all N annotations.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from histoviewer.core.annotations import Annotation, AnnotationDocument, ShapeKind  # noqa: E402
from histoviewer.core.annotations.asap_xml import load_asap_xml, save_asap_xml  # noqa: E402
from histoviewer.core.annotations.geojson_io import load_geojson, save_geojson  # noqa: E402

SLIDE_W, SLIDE_H = 100_000, 200_000
SCREEN_W, SCREEN_H = 1920, 1080
ZOOMS = (1.0, 4.0, 16.0, 64.0)
CLASSES = ("Tumor", "Suspect", "Normal", "Other")


def blob(rng: np.random.Generator, n: int, radius: float) -> np.ndarray:
    """A lesion-like outline: smooth lobes plus 1 % vertex jitter (hand-drawn outlines and
    traced lesions are smooth at the scale of their vertices)."""
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    k, phase = rng.integers(2, 7), rng.uniform(0, 2 * np.pi)
    r = radius * (0.8 + 0.15 * np.sin(k * theta + phase) + 0.01 * rng.random(n))
    cx, cy = rng.uniform(radius, SLIDE_W - radius), rng.uniform(radius, SLIDE_H - radius)
    return np.round(np.column_stack([cx + r * np.cos(theta), cy + r * np.sin(theta)]), 2)


def make_annotations(n: int, seed: int = 0) -> list[Annotation]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        u = rng.random()
        if u < 0.90:
            pts = blob(rng, int(rng.integers(20, 61)), rng.uniform(10, 200))
        elif u < 0.99:
            pts = blob(rng, int(rng.integers(100, 501)), rng.uniform(250, 2500))
        else:
            pts = blob(rng, 2000, rng.uniform(2500, 10000))
        out.append(Annotation(ShapeKind.POLYGON, pts, class_name=CLASSES[i % 4], name=f"a{i}"))
    return out


def naive_paint(anns: list[Annotation], bounds: list[tuple], rect: tuple) -> int:
    x0, y0, x1, y1 = rect
    vertices = 0
    for ann, b in zip(anns, bounds):
        if b[0] <= x1 and b[2] >= x0 and b[1] <= y1 and b[3] >= y0:
            vertices += len(ann.outline())
    return vertices


def bench_views(n: int, reps: int = 20) -> dict:
    anns = make_annotations(n)
    t = time.perf_counter()
    doc = AnnotationDocument(mpp=0.25)
    doc.add_many(anns)
    build_s = time.perf_counter() - t
    bounds = [a.l0_bounds() for a in anns]
    rng = np.random.default_rng(1)
    rows = []
    for zoom in ZOOMS:
        w, h = SCREEN_W * zoom, SCREEN_H * zoom
        rects = [(x, y, x + w, y + h) for x, y in zip(rng.uniform(0, max(1, SLIDE_W - w), reps),
                                                      rng.uniform(0, max(1, SLIDE_H - h), reps))]
        doc._lod.clear()  # noqa: SLF001 - the benchmark measures the cold cache on purpose
        t = time.perf_counter()
        doc.paint_list(*rects[0], zoom)
        cold_ms = (time.perf_counter() - t) * 1e3
        for r in rects:  # warm: a user panning around at this zoom
            doc.paint_list(*r, zoom)
        idx_ms, naive_ms, idx_vertices, naive_vertices, shown = [], [], [], [], []
        for r in rects:
            t = time.perf_counter()
            shapes = doc.paint_list(*r, zoom)
            idx_ms.append((time.perf_counter() - t) * 1e3)
            idx_vertices.append(sum(len(s.l0_points) for s in shapes))
            shown.append(len(shapes))
            t = time.perf_counter()
            naive_vertices.append(naive_paint(anns, bounds, r))
            naive_ms.append((time.perf_counter() - t) * 1e3)
        rows.append({
            "l0_per_screen_px": zoom, "in_view_median": statistics.median(shown),
            "indexed_ms_median": statistics.median(idx_ms), "indexed_ms_max": max(idx_ms),
            "cold_first_paint_ms": cold_ms,
            "naive_ms_median": statistics.median(naive_ms),
            "speedup_median": statistics.median(naive_ms) / max(statistics.median(idx_ms), 1e-6),
            "vertices_indexed_median": statistics.median(idx_vertices),
            "vertices_naive_median": statistics.median(naive_vertices),
        })
    # edits with N annotations open: move one, then undo it (index and LOD cache updated)
    uids = [a.uid for a in anns[:200]]
    t = time.perf_counter()
    for u in uids:
        doc.move([u], 5.0, 5.0)
        doc.undo()
    edit_ms = (time.perf_counter() - t) * 1e3 / (2 * len(uids))
    return {"annotations": n, "vertices": sum(a.n_vertices for a in anns), "build_s": build_s,
            "views": rows, "edit_ms_mean": edit_ms}


def bench_files(n: int) -> dict:
    doc = AnnotationDocument()
    doc.add_many(make_annotations(n, seed=2))
    aset = doc.to_set()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, save, load in (("geojson", save_geojson, load_geojson), ("asap-xml", save_asap_xml, load_asap_xml)):
            path = Path(tmp) / f"a.{'geojson' if fmt == 'geojson' else 'xml'}"
            t = time.perf_counter()
            save(path, aset)
            write_s = time.perf_counter() - t
            t = time.perf_counter()
            back = load(path).annotation_set
            read_s = time.perf_counter() - t
            same = [a.l0_points for a in back.annotations] == [a.l0_points for a in aset.annotations]
            out[fmt] = {"mib": path.stat().st_size / 2**20, "write_s": write_s, "read_s": read_s,
                        "vertices_identical": same}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[5000, 20000])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = {"load_before": os.getloadavg(), "cpus": os.cpu_count(), "runs": []}
    for n in args.counts:
        run = bench_views(n)
        run["files"] = bench_files(n)
        result["runs"].append(run)
    result["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"load average before {result['load_before']}, after {result['load_after']}, {result['cpus']} CPUs")
    for run in result["runs"]:
        print(f"\n## {run['annotations']} annotations, {run['vertices']} vertices "
              f"(document built in {run['build_s']:.2f} s; move or undo {run['edit_ms_mean']:.2f} ms)")
        print("| l0 px per screen px | in view | indexed ms (median / max) | cold first paint ms | naive ms "
              "| speed-up | vertices to paint: indexed / naive |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for v in run["views"]:
            print(f"| {v['l0_per_screen_px']:g} | {v['in_view_median']:.0f} | {v['indexed_ms_median']:.2f} / "
                  f"{v['indexed_ms_max']:.2f} | {v['cold_first_paint_ms']:.0f} | {v['naive_ms_median']:.2f} | "
                  f"{v['speedup_median']:.1f}x | {v['vertices_indexed_median']:.0f} / {v['vertices_naive_median']:.0f} |")
        for fmt, f in run["files"].items():
            print(f"- {fmt}: {f['mib']:.1f} MiB, write {f['write_s']:.2f} s, read {f['read_s']:.2f} s, "
                  f"vertices identical after the round trip: {f['vertices_identical']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
