"""Whole-slide ``analyze`` time on a phantom, against a naive loop and against the bound.

    python benchmarks/bench_analyze.py [--slide PATH] [--width 100000 --height 200000]
                                       [--model cnn] [--naive-patches 300] [--json OUT.json]

- analyze: ``analyze_slide`` as the CLI runs it (tissue grid, batched region reads on a
  reader thread, model batches), outputs written.
- naive: the tutorial loop on a random sample of the same tissue cells: one
  ``read_region`` per patch at the finest level not finer than needed (as
  ``SlidePatchSet`` does), one resize, one ``predict_proba`` per patch; extrapolated to
  every tissue patch.
- bound: only reading + decoding every region analyze reads (same plan, same pixel
  source, one thread, no resize), plus only the model on as many patches (batches of 512). analyze / (read +
  model) near or below 1 means the pipeline adds nothing; below 1 means overlap wins.

The phantom is written once (``write_phantom``, ~6 min for 100k x 200k) and reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info  # noqa: E402
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide  # noqa: E402
from histoviewer.core.grid_geometry import GridGeometry  # noqa: E402
from histoviewer.core.inference.regions import RegionCutter, plan_regions  # noqa: E402
from histoviewer.core.inference.tiff_regions import TiffRegionSource  # noqa: E402
from histoviewer.core.inference.tissue import grid_tissue  # noqa: E402
from histoviewer.core.patches.resample import to_model_scale  # noqa: E402
from histoviewer.core.slide import open_slide  # noqa: E402


def ensure_slide(path: Path, width: int, height: int) -> Path:
    if path.exists():
        return path
    from histoviewer.core.phantom import write_phantom

    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing phantom {width}x{height} to {path} (once) ...", flush=True)
    res = write_phantom(path, width=width, height=height, mpp=0.25)
    print(f"  done in {res.seconds:.0f} s", flush=True)
    return path


def load_model(spec: str):
    from histoviewer.core.errors import ModelLoadError
    from histoviewer.core.models.registry import open_model

    try:
        return open_model(spec, device="cpu"), spec
    except ModelLoadError as exc:
        from histoviewer.core.models.classifier import ModelInfo
        from histoviewer.core.models.cnn import CnnClassifier

        print(f"{exc}; using a freshly initialised strided CNN (same speed)", flush=True)
        return CnnClassifier.new(ModelInfo(name="fresh", kind="cnn", architecture="strided-cnn"), "cpu"), "fresh"


def naive_loop(reader, geometry: GridGeometry, model, cells: np.ndarray) -> float:
    """Seconds per patch: one read, one resize, one model call per patch."""
    spec = model.input
    level = reader.best_level_for_downsample(geometry.l0_patch / spec.patch_px)
    ds = reader.info.level_downsamples[level]
    lv_size = int(round(geometry.l0_patch / ds))
    t0 = time.perf_counter()
    for cell in cells:
        x, y, _, _ = geometry.cell_rect(int(cell))
        region = reader.read_region(int(x), int(y), level, lv_size, lv_size)
        patch = to_model_scale(region, spec.patch_px * spec.mpp / lv_size, spec)
        model.predict_proba(patch)
    return (time.perf_counter() - t0) / len(cells)


def bound(reader, geometry: GridGeometry, model, cells: np.ndarray, fast: bool) -> tuple[float, float]:
    """(read + decode s of analyze's region plan through the same source, model-only s for
    len(cells) patches)."""
    source = TiffRegionSource.open(reader.info.path, reader) if fast else None
    cutter = RegionCutter(reader, geometry, source=source)
    ds = cutter.level_ds
    t0 = time.perf_counter()
    for job in plan_regions(geometry, cells, 16):
        l0_x0 = job.c0 * geometry.l0_stride
        l0_y0 = job.r0 * geometry.l0_stride
        lv_w = int(np.ceil((job.c1 - job.c0) * geometry.l0_stride / ds + geometry.l0_patch / ds)) + 2
        lv_h = int(np.ceil((job.r1 - job.r0) * geometry.l0_stride / ds + geometry.l0_patch / ds)) + 2
        cutter.source.read_region(int(l0_x0), int(l0_y0), cutter.level, lv_w, lv_h)
    read_s = time.perf_counter() - t0
    if source is not None:
        source.close()
    p = model.input.patch_px
    batch = np.random.default_rng(0).integers(0, 256, (512, p, p, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    left = len(cells)
    while left > 0:
        model.predict_proba(batch[: min(512, left)])
        left -= 512
    return read_s, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slide", type=Path, default=None)
    ap.add_argument("--width", type=int, default=100_000)
    ap.add_argument("--height", type=int, default=200_000)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--naive-patches", type=int, default=300)
    ap.add_argument("--read-threads", type=int, default=1)
    ap.add_argument("--openslide", action="store_true",
                    help="also time analyze with every read through OpenSlide (no direct TIFF tile decoding)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    slide = ensure_slide(args.slide or Path(f"/tmp/histoviewer-bench/phantom-{args.width // 1000}k-"
                                            f"{args.height // 1000}k.tiff"), args.width, args.height)
    model, model_label = load_model(args.model)
    out = {"slide": str(slide), "model": model_label, "machine": machine_info()}
    if args.openslide:
        with tempfile.TemporaryDirectory() as tmp:
            options = AnalyzeOptions(read_threads=args.read_threads, fast_tiff=False)
            s_os = analyze_slide(slide, tmp, model, options)
        out["analyze_openslide"] = {"total_s": s_os.timing.total_s, "timing": asdict(s_os.timing)}
        print(f"analyze through OpenSlide only: {s_os.timing.total_s:.1f} s; timing {s_os.timing}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        summary = analyze_slide(slide, tmp, model, AnalyzeOptions(read_threads=args.read_threads))
    n = summary.tissue_patches
    out["analyze"] = {"region_source": summary.region_source, "total_s": summary.timing.total_s, "timing": asdict(summary.timing), "tissue_patches": n,
                      "grid": [summary.geometry.rows, summary.geometry.cols],
                      "level_read": summary.level_read,
                      "tissue_fraction": n / (summary.geometry.rows * summary.geometry.cols)}
    print(f"analyze: {n} tissue patches in {summary.timing.total_s:.1f} s "
          f"({n / summary.timing.classify_wall_s:.0f} patches/s while classifying); timing {summary.timing}",
          flush=True)
    with open_slide(slide) as reader:
        spec = model.input
        g = GridGeometry.for_slide(reader.info.dimensions, reader.info.mpp, spec.mpp, spec.patch_px)
        cells = np.flatnonzero(grid_tissue(reader, g).reshape(-1))
        sample = np.random.default_rng(0).choice(cells, min(args.naive_patches, len(cells)), replace=False)
        per_patch = naive_loop(reader, g, model, sample)
        read_s, model_s = bound(reader, g, model, cells, summary.region_source == "tifffile")
    naive_total = per_patch * n
    total = summary.timing.total_s
    out["naive"] = {"patches_timed": len(sample), "s_per_patch": per_patch, "extrapolated_s": naive_total,
                    "speedup": naive_total / total}
    out["bound"] = {"read_decode_s": read_s, "model_s": model_s, "sum_s": read_s + model_s,
                    "analyze_over_bound": total / (read_s + model_s)}
    print(f"naive loop: {per_patch * 1e3:.1f} ms/patch on {len(sample)} patches -> {naive_total:.0f} s "
          f"extrapolated; analyze is {naive_total / total:.1f}x faster")
    print(f"bound: read+decode {read_s:.1f} s + model {model_s:.1f} s = {read_s + model_s:.1f} s; "
          f"analyze / bound = {total / (read_s + model_s):.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
