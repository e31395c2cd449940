"""The viewer's live overlay map against ``analyze``'s, cell by cell, on the same slides.

For each slide: ``analyze_slide`` (its map as written to ``probability.tiff``) and the live
overlay (``LiveHeatmap``, the core of the viewer's overlay, background on until every tissue
cell is done, its region source as the viewer has it) with the same model on the CPU. Prints
how many cells differ and by how much, and both lesion lists (docs/benchmarks.md, "Lesion
diameters: ... viewer = analyze").

    PYTHONPATH=$PWD .venv/bin/python benchmarks/compare_live_analyze.py SLIDE [SLIDE ...]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from histoviewer.core.analysis.lesions import MapFrame
from histoviewer.core.analysis.map_io import read_probability_map
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.threshold import choose_lesion_params
from histoviewer.core.colormaps import colormap_lut
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.inference.live import LiveHeatmap, LiveOptions
from histoviewer.core.inference.overlay import HeatmapStyle
from histoviewer.core.models.registry import open_model
from histoviewer.core.slide import open_slide


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("slides", nargs="+", type=Path)
    ap.add_argument("--model", default="cnn")
    args = ap.parse_args()
    model = open_model(args.model, "cpu")
    tmp = Path(tempfile.mkdtemp(prefix="hv-live-vs-analyze-"))
    try:
        for path in args.slides:
            summary = analyze_slide(path, tmp / path.stem, model, AnalyzeOptions(device="cpu"))
            written, _geometry = read_probability_map(tmp / path.stem / "probability.tiff")
            with open_slide(path) as reader:
                live = LiveHeatmap(path, reader, LiveOptions(model=args.model, device="cpu", use_cache=False),
                                   HeatmapStyle(colormap_lut("viridis")))
                if not live.wait_ready(120):
                    raise SystemExit(f"{path}: the live overlay did not start: {live.error}")
                live.submit_view((0, 0, *reader.info.dimensions))
                t0 = time.time()
                while not live.wait_idle(5) and time.time() - t0 < 600:
                    pass
                encoded = live.grid.encoded_map()
                params = choose_lesion_params(None, live.model.info.operating_point)
                found = analyse_map(encoded, MapFrame.from_geometry(live.grid.geometry), params)
                live.close()
            diff = np.abs(np.nan_to_num(written, nan=-9.0) - np.nan_to_num(encoded, nan=-9.0))
            print(f"{path.name}: {int((diff > 1e-6).sum())} of {diff.size} cells differ, max |diff| "
                  f"{float(diff.max()):.4f}")
            print("  analyze:", [(les.name, round(les.diameter_mm, 4)) for les in summary.lesions])
            print("  live:   ", [(les.name, round(les.diameter_mm, 4)) for les in found.lesions])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
