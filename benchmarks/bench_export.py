"""Whole-slide overlay export: time and peak memory against the output's size and against
reading the same slide pixels alone.

    python benchmarks/bench_export.py [--slide PATH] [--um-per-px 4] [--out FILE.tiff|.png]
                                      [--reads direct|openslide] [--skip-read-baseline]
                                      [--json OUT.json]

- export: ``export_overlay`` of the whole slide at ``--um-per-px`` (streamed, pyramidal
  TIFF by default), with the phantom's ground-truth outlines and diameters drawn.
- read baseline (same run): every slide window the export reads, read and decoded in
  the same order through the same source (``--reads``: direct tile decoding, the default,
  or OpenSlide), nothing else. export / read shows what rendering, blending, JPEG
  encoding and the pyramid add to the unavoidable reads.
- memory: process RSS sampled every 50 ms; the export's peak above the RSS before it
  starts, against the output's size as uncompressed RGB.

The probability grid is synthetic (the CNN is not run on 20 gigapixels here): a grid with
the CNN's geometry (96 px at 0.97 um/px), 0.9 inside the phantom's ground-truth lesions
and 0.1 elsewhere. The phantom is written once (~6 min) and reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info, rss_mib  # noqa: E402
from histoviewer.core.annotations.geojson_io import read_geojson  # noqa: E402
from histoviewer.core.progress import JobControl  # noqa: E402
from histoviewer.core.export import (HeatmapData, OverlayRequest, export_overlay,  # noqa: E402
                                     outlines_from_annotations)
from histoviewer.core.export.render import RenderSpec, TileRenderer, output_size  # noqa: E402
from histoviewer.core.grid_geometry import GridGeometry  # noqa: E402
from histoviewer.core.models.record import ModelRecord  # noqa: E402
from histoviewer.core.slide import open_slide  # noqa: E402

DEFAULT_SLIDE = Path("/tmp/histoviewer-bench/phantom-100k-200k.tiff")


class PeakRss:
    """Samples RSS on a thread; ``peak`` in MiB."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.peak = rss_mib()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, args=(every_s,), daemon=True)

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.peak = max(self.peak, rss_mib())

    def __enter__(self) -> "PeakRss":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mib())


def synthetic_heatmap(info, annotations) -> HeatmapData:
    from skimage.draw import polygon

    g = GridGeometry.for_slide(info.dimensions, info.mpp, 0.97, 96)
    enc = np.full(g.shape, 0.1, np.float32)
    for ann in annotations:
        pts = np.asarray(ann.l0_points)
        rr, cc = polygon((pts[:, 1] - g.l0_origin_y) / g.l0_stride + 0.5,
                         (pts[:, 0] - g.l0_origin_x) / g.l0_stride + 0.5, g.shape)
        enc[rr, cc] = 0.9
    model = ModelRecord(name="synthetic-ground-truth", display_name="synthetic-ground-truth", content_hash="0" * 64)
    return HeatmapData(enc, g, model, "synthetic (ground truth)")


def read_baseline(reader, spec: RenderSpec, tile_px: int, source) -> float:
    """Read every slide window of the output once (same level and source, 512 px windows),
    nothing else: the floor under any export."""
    renderer = TileRenderer(spec, None, reader, source)
    w, h = spec.size
    t0 = time.perf_counter()
    for v0 in range(0, h, tile_px):
        for u0 in range(0, w, tile_px):
            renderer._slide(u0, v0, min(tile_px, w - u0), min(tile_px, h - v0))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slide", type=Path, default=DEFAULT_SLIDE)
    ap.add_argument("--um-per-px", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--reads", choices=("direct", "openslide"), default="direct")
    ap.add_argument("--skip-read-baseline", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.slide.exists():
        print(f"{args.slide} missing: write it with histoviewer phantom {args.slide} --width 100000 "
              "--height 200000 --mpp 0.25", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-export-")) / "overlay.tiff"
    truth = args.slide.with_suffix(".geojson")
    anns = read_geojson(truth) if truth.exists() else []
    results: dict = {"machine": machine_info(), "slide": str(args.slide), "um_per_px": args.um_per_px,
                     "reads": args.reads}
    with open_slide(args.slide) as reader:
        info = reader.info
        heatmap = synthetic_heatmap(info, anns)
        outlines = outlines_from_annotations(anns, info.mpp)
        l0_per_px = args.um_per_px / info.mpp
        size = output_size((0, 0, *info.dimensions), l0_per_px)
        results.update(slide_size=list(info.dimensions), output_size=list(size),
                       output_rgb_mib=size[0] * size[1] * 3 / 2**20, lesions=len(anns))
        print(f"slide {info.dimensions[0]} x {info.dimensions[1]} px -> output {size[0]} x {size[1]} px "
              f"({results['output_rgb_mib']:.0f} MiB as RGB), {len(anns)} outlines", flush=True)
        if not args.skip_read_baseline:
            spec = RenderSpec((0, 0, *info.dimensions), l0_per_px, size)
            from histoviewer.core.inference.tiff_regions import TiffRegionSource

            source = TiffRegionSource.open(args.slide, reader) if args.reads == "direct" else None
            results["read_baseline_s"] = read_baseline(reader, spec, 512, source)
            if source is not None:
                source.close()
            print(f"read baseline: {results['read_baseline_s']:.1f} s", flush=True)
        base = rss_mib()
        last = [0.0]

        def progress(_stage: str, done: int, total: int, _detail: str) -> None:
            now = time.perf_counter()
            if now - last[0] > 15 or done == total:
                last[0] = now
                print(f"  {done}/{total} tiles, RSS {rss_mib():.0f} MiB", flush=True)

        with PeakRss() as peak:
            request = OverlayRequest(output_mpp=args.um_per_px, outlines=outlines,
                                     fast_tiff=args.reads == "direct")
            res = export_overlay(out, reader, heatmap, request, control=JobControl(progress=progress))
    results.update(export_s=res.seconds, rss_before_mib=base, rss_peak_mib=peak.peak,
                   export_peak_above_before_mib=peak.peak - base, file_mib=out.stat().st_size / 2**20)
    results["peak_over_output"] = results["export_peak_above_before_mib"] / results["output_rgb_mib"]
    if "read_baseline_s" in results:
        results["export_over_read"] = res.seconds / results["read_baseline_s"]
    try:
        import openslide

        with openslide.OpenSlide(str(out)) as osr:
            results["openslide_levels"] = [list(d) for d in osr.level_dimensions]
            results["openslide_mpp_x"] = float(osr.properties[openslide.PROPERTY_NAME_MPP_X])
    except Exception as exc:  # noqa: BLE001 - reported, not fatal to the numbers
        results["openslide_error"] = str(exc)
    for k, v in results.items():
        if k != "machine":
            print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
