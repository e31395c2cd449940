"""Benchmark: generate a phantom slide and report time, throughput, peak memory and size.

Default is a CAMELYON16-sized slide (100,000 x 200,000 px at 0.25 um/px, ~30 % tissue)::

    nice .venv/bin/python benchmarks/bench_phantom.py                      # full size
    .venv/bin/python benchmarks/bench_phantom.py --width 20000 --height 20000  # quick

The slide goes to a temporary folder that is deleted afterwards, unless ``--out`` is given
(then it is kept). Peak memory: ``ru_maxrss`` of this process and of its largest worker
process, and the peak of their sum sampled once a second with psutil (when installed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

from histoviewer.core.phantom import DEFAULT_LESIONS, write_phantom
from histoviewer.core.progress import JobControl


class _TotalRss:
    """Samples the resident memory of this process plus its children (MiB)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.peak_mib = 0.0
        self._stop = threading.Event()
        try:
            import psutil
        except ImportError:
            self._thread = None
            return
        self._proc = psutil.Process()
        self._psutil = psutil
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                procs = [self._proc] + self._proc.children(recursive=True)
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except self._psutil.NoSuchProcess:
                        pass
                self.peak_mib = max(self.peak_mib, total / 2**20)
            except self._psutil.Error:
                pass

    def stop(self) -> float | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        return self.peak_mib


def _default_lesions(width: int, height: int, mpp: float) -> str:
    """The CAMELYON-like default where it fits, else the largest subset that does."""
    short_mm = min(width, height) * mpp / 1000.0
    if short_mm >= 10.0:
        return DEFAULT_LESIONS
    if short_mm >= 3.0:
        return "micro:0.8,itc:0.15"
    return "itc:0.1" if short_mm >= 0.7 else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=100_000)
    ap.add_argument("--height", type=int, default=200_000)
    ap.add_argument("--mpp", type=float, default=0.25)
    ap.add_argument("--lesions", default=None,
                    help=f"lesion spec (default {DEFAULT_LESIONS!r}, smaller on small slides)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--quality", type=int, default=85)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="keep the slide here")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.lesions is None:
        args.lesions = _default_lesions(args.width, args.height, args.mpp)

    started = time.perf_counter()
    last = [0.0]

    def progress(_stage: str, done: int, total: int, _detail: str) -> None:
        now = time.perf_counter() - started
        if now - last[0] >= 30 or done == total:
            last[0] = now
            print(f"[{now:7.1f} s] {done}/{total} level-0 tiles ({100 * done / total:.1f} %)",
                  file=sys.stderr, flush=True)

    sampler = _TotalRss()
    with tempfile.TemporaryDirectory(prefix="bench-phantom-") as tmp:
        out = args.out if args.out is not None else Path(tmp) / "phantom.tiff"
        result = write_phantom(
            out, width=args.width, height=args.height, mpp=args.mpp, lesions=args.lesions,
            seed=args.seed, tile_size=args.tile_size, jpeg_quality=args.quality,
            control=JobControl(progress=progress), workers=args.workers,
        )
        peak_total = sampler.stop()
        size = out.stat().st_size
    self_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    mpx = args.width * args.height / 1e6
    report = {
        "width": args.width,
        "height": args.height,
        "mpp": args.mpp,
        "lesions": [les.to_dict() for les in result.lesions],
        "levels": len(result.level_dimensions),
        "seconds": round(result.seconds, 1),
        "mpx_per_s": round(mpx / result.seconds, 1),
        "peak_rss_main_mib": round(self_mib),
        "peak_rss_largest_worker_mib": round(child_mib),
        "peak_rss_total_sampled_mib": None if peak_total is None else round(peak_total),
        "file_mib": round(size / 2**20, 1),
        "kept": str(out) if args.out is not None else None,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"phantom {args.width} x {args.height} px at {args.mpp} um/px "
              f"({mpx:.0f} Mpx, {report['levels']} levels, lesions {args.lesions!r})")
        print(f"  time:        {report['seconds']} s ({report['mpx_per_s']} Mpx/s)")
        print(f"  peak RSS:    main {report['peak_rss_main_mib']} MiB, largest worker "
              f"{report['peak_rss_largest_worker_mib']} MiB, total (sampled) "
              f"{report['peak_rss_total_sampled_mib']} MiB")
        print(f"  file size:   {report['file_mib']} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
