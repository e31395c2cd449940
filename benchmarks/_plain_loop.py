"""The plain PyTorch loop ``bench_fixed_costs.py`` compares ``analyze`` with (issue 15).

    python benchmarks/_plain_loop.py SLIDE OUT.npy [--model cnn] [--batch 256]

What a competent user writes without our pipeline: OpenSlide reads level 2 (1.0 um/px, the
level ``analyze`` reads for the 0.972 um/px model) one patch at a time, Pillow resizes each
patch to the model's 96 px, and batches of 256 go through the same model
(``predict_proba``: the same network, normalisation and calibration). The tissue cells are
the ones ``analyze`` classifies (our tissue mask, same grid), so both classify the same
patches. The model runs on torch (``--engine``; ``analyze`` runs it on onnxruntime on the
CPU). Writes the probabilities (one per tissue cell, grid order) to OUT.npy. Everything
is inside the process's wall time, start-up included, as for ``histoviewer analyze``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

T_START = time.perf_counter()

import numpy as np
import openslide
import torch  # noqa: F401 - the plain loop imports torch itself, as any would
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.regions import choose_level
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.models.registry import open_model
from histoviewer.core.slide import open_slide


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("slide", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--engine", default="torch", help="the model's engine (a plain PyTorch loop: torch)")
    args = ap.parse_args()
    model = open_model(args.model, device="cpu", engine=args.engine)
    p = model.input.patch_px
    with open_slide(
        args.slide
    ) as reader:  # our reader only for the grid and the tissue mask
        g = GridGeometry.for_slide(
            reader.info.dimensions, reader.info.mpp, model.input.mpp, p
        )
        cells = np.flatnonzero(grid_tissue(reader, g).reshape(-1))
        level = choose_level(reader, g)
    slide = openslide.OpenSlide(str(args.slide))
    ds = slide.level_downsamples[level]
    lv_size = round(g.l0_patch / ds)
    probs = np.empty(len(cells), np.float32)
    batch = np.empty((args.batch, p, p, 3), np.uint8)
    n = 0
    done = 0
    for cell in cells:
        x, y, _, _ = g.cell_rect(int(cell))
        rgba = slide.read_region((int(x), int(y)), level, (lv_size, lv_size))
        batch[n] = np.asarray(
            rgba.convert("RGB").resize((p, p), Image.Resampling.BILINEAR)
        )
        n += 1
        if n == args.batch:
            probs[done : done + n] = model.predict_proba(batch[:n])
            done += n
            n = 0
    if n:
        probs[done : done + n] = model.predict_proba(batch[:n])
    np.save(args.out, probs)
    slide.close()
    print(
        f"plain loop: {len(cells)} patches, level {level}, {time.perf_counter() - T_START:.2f} s in the process"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
