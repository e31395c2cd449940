"""The blank-patch check on every tissue region of a slide, as ``analyze``'s reader thread runs
it: the exact integer path (``blank_patches``) against the float32 definition alone
(``blank_by_luminance``, what every patch went through before), same verdicts required.

    python benchmarks/bench_blank_check.py [--slide PATH] [--rounds 5]

Regions are read once (``RegionCutter``, analyze's blocks of 16 x 16 cells) and kept; then
each round times both checks over all of them, interleaved. Prints the medians (seconds and
thread CPU seconds) and the number of patches each path sent to the float32 definition.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.blank import (
    MIN_BLOCK_SPREAD,
    _exact_block_spread,
    blank_by_luminance,
    blank_patches,
)
from histoviewer.core.inference.regions import RegionCutter, plan_regions
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.models.registry import open_model
from histoviewer.core.slide import open_slide


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--slide",
        type=Path,
        default=Path("/tmp/histoviewer-bench/phantom-40k-40k.tiff"),
    )
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    model = open_model("cnn", device="cpu")
    with open_slide(args.slide) as reader:
        g = GridGeometry.for_slide(
            reader.info.dimensions,
            reader.info.mpp,
            model.input.mpp,
            model.input.patch_px,
        )
        cells = np.flatnonzero(grid_tissue(reader, g).reshape(-1))
        source = TiffRegionSource.open(args.slide, reader)
        cutter = RegionCutter(reader, g, source=source)
        regions = [cutter(job) for job in plan_regions(g, cells, 16)]
        if source is not None:
            source.close()
    model.close()
    n = sum(len(r) for r in regions)
    times: dict[str, list[float]] = {
        "exact": [],
        "float32": [],
        "exact_cpu": [],
        "float32_cpu": [],
    }
    for _ in range(args.rounds):
        for name, check in (("exact", blank_patches), ("float32", blank_by_luminance)):
            c0, t0 = time.thread_time(), time.perf_counter()
            verdicts = [check(r) for r in regions]
            times[name].append(time.perf_counter() - t0)
            times[f"{name}_cpu"].append(time.thread_time() - c0)
            if name == "exact":
                exact = verdicts
            elif any(not np.array_equal(a, b) for a, b in zip(exact, verdicts)):
                raise SystemExit(
                    "the exact path's verdicts differ from the float32 definition's"
                )
    to_float32 = sum(
        int((_exact_block_spread(r) < MIN_BLOCK_SPREAD + 0.05).sum()) for r in regions
    )
    m = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.slide.name}: {n} tissue patches in {len(regions)} regions; {machine_info()}"
    )
    print(
        f"  exact path {m['exact']:.3f} s ({m['exact_cpu']:.3f} CPU s), float32 definition alone "
        f"{m['float32']:.3f} s ({m['float32_cpu']:.3f} CPU s): x{m['float32'] / m['exact']:.1f}; "
        f"verdicts identical; {to_float32} patches went to the float32 definition, "
        f"{sum(int(v.sum()) for v in exact)} blank"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
