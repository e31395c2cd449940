"""Bias and spread of lesion diameters measured on map cells: old outline vs the sub-cell one.

Lesions: the positive polygons of ``../shared/data/annotations/camelyon16-train`` (real
CAMELYON16 metastases) whose largest diameter (max Feret of the vertices) lies in
``--min-mm .. --max-mm``, and ``--phantoms`` phantom outlines (``core/phantom/layout.py``:
irregular, knobbly, exactly known diameter) spread evenly over the same range.

Each lesion is rasterised at a random offset onto map cells of 2, 4, 8 and 16 um, as one of
three kinds of map (``--kinds``):

- ``fraction``: each cell the fraction of it that is tumour (4 x 4 samples per cell; frame
  without a label window). This is what the old outline was biased on.
- ``centre``: 1 when the cell's centre is in the lesion (a saturated classifier; no window).
- ``window``: 1 when the lesion touches the cell's central window of 1/3 cell (a PatchCamelyon
  label; 9 x 9 samples per cell), measured with that window (the analyze / viewer path).

and measured by ``find_lesions`` (threshold 0.5) twice: ``old`` = the 0.5 outline
(``LesionParams(subcell_fractions=False)``), ``new`` = the default (sub-cell mapping of
fraction maps, ``core/analysis/subcell.py``; window and centre maps are measured as before).
Printed per kind, method and cell size: the median and 5-95 % range of (measured - true) in
um and in cells, the share inside the interval each lesion carries, how many 0.2-2 mm lesions
come out ITC (micro as ITC) and how many <= 0.2 mm ones come out micro (ITC as micro), how many
of those wrong calls carry no border note, and lesions split in two or more.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_diameter_bias.py [--limit N] [--kinds fraction]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from skimage import draw

from histoviewer.core.analysis.lesions import LesionParams, MapFrame, find_lesions
from histoviewer.core.geometry import max_feret_diameter
from histoviewer.core.phantom.layout import _lesion_outline
from histoviewer.core.phantom.spec import LesionSpec
from histoviewer.core.staging_terms import SizeClass

MPP = {True: 0.243, False: 0.226}  # Radboud (Tumor_001-070), Utrecht (071-110)
CELLS_UM = (2.0, 4.0, 8.0, 16.0)
WINDOW = 1.0 / 3.0  # PatchCamelyon label window, of the cell side
METHODS = {"old": LesionParams(0.5, subcell_fractions=False), "new": LesionParams(0.5)}


def real_polygons(folder: Path, min_mm: float, max_mm: float):
    for path in sorted(folder.glob("Tumor_*.json")):
        mpp = MPP[int(path.stem.split("_")[1]) <= 70]
        for item in json.loads(path.read_text())["positive"]:
            poly = np.asarray(item["vertices"], float) * mpp  # um
            if len(poly) < 3:
                continue
            true_um = max_feret_diameter(poly)
            if min_mm * 1000 <= true_um <= max_mm * 1000:
                yield path.stem, poly, true_um


def phantom_polygons(n: int, min_mm: float, max_mm: float):
    rng = np.random.default_rng(1)
    for i, d_mm in enumerate(np.linspace(min_mm, max_mm, n)):
        kind = SizeClass.ITC if d_mm <= 0.2 else SizeClass.MICRO if d_mm <= 2 else SizeClass.MACRO
        poly = _lesion_outline(LesionSpec(kind, float(d_mm)), 1.0, rng)  # mpp 1: um
        yield f"phantom-{i}", poly, max_feret_diameter(poly)


def rasterise(poly_um: np.ndarray, cell_um: float, rng: np.random.Generator, kind: str) -> np.ndarray:
    """The map of one lesion (cell (r, c) spans [c, c+1) x [r, r+1) in cell units)."""
    offset = rng.uniform(0, cell_um, 2)
    s = {"fraction": 4, "centre": 1, "window": 9}[kind]
    xy = (poly_um - poly_um.min(0) + offset) / cell_um + 1.0  # one empty cell around
    shape = (int(xy[:, 1].max()) + 3, int(xy[:, 0].max()) + 3)
    # sub-sample (i, j) of cell (r, c) is centred at ((c * s + j + 0.5) / s, ...)
    rr, cc = draw.polygon(xy[:, 1] * s - 0.5, xy[:, 0] * s - 0.5, (shape[0] * s, shape[1] * s))
    fine = np.zeros((shape[0] * s, shape[1] * s), np.float32)
    fine[rr, cc] = 1.0
    blocks = fine.reshape(shape[0], s, shape[1], s)
    if kind == "fraction":
        return blocks.mean(axis=(1, 3))
    if kind == "centre":
        return blocks[:, 0, :, 0]
    return blocks[:, 3:6, :, 3:6].max(axis=(1, 3))  # the central 3 x 3 of 9 x 9: 1/3 cell


def frame_for(kind: str, cell_um: float) -> MapFrame:
    return MapFrame.for_cells(cell_um, window_um=cell_um * WINDOW if kind == "window" else 0.0)


def run(lesions, kind: str, cell_um: float, seed: int) -> dict[str, dict]:
    """Both methods on the same rasterised maps."""
    rng = np.random.default_rng(seed)
    maps = [(rasterise(poly, cell_um, rng, kind), true_um) for _name, poly, true_um in lesions]
    frame = frame_for(kind, cell_um)
    out = {}
    for method, params in METHODS.items():
        err, inside, micro_itc, itc_micro, silent, micro, itc, split = [], 0, 0, 0, 0, 0, 0, 0
        t0 = time.perf_counter()
        for grid, true_um in maps:
            found = find_lesions(grid, frame, params)
            if not found:
                continue
            split += len(found) > 1
            les = found[0]
            d_um = les.diameter_mm * 1000
            err.append(d_um - true_um)
            inside += les.diameter_low_mm * 1000 <= true_um <= les.diameter_high_mm * 1000
            if 200 < true_um <= 2000:
                micro += 1
                micro_itc += d_um <= 200
                silent += d_um <= 200 and not les.border
            elif true_um <= 200:
                itc += 1
                itc_micro += d_um > 200
                silent += d_um > 200 and not les.border
        out[method] = {"err": np.asarray(err), "inside": inside, "micro_itc": micro_itc, "itc_micro": itc_micro,
                           "silent": silent, "micro": micro, "itc": itc, "split": split, "s": time.perf_counter() - t0}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    ap.add_argument("--min-mm", type=float, default=0.15)
    ap.add_argument("--max-mm", type=float, default=0.3)
    ap.add_argument("--limit", type=int, default=0, help="every k-th real lesion, about N of them")
    ap.add_argument("--phantoms", type=int, default=60)
    ap.add_argument("--kinds", default="fraction,centre,window")
    ap.add_argument("--cells", default="2,4,8,16", help="map cell sizes in um")
    ap.add_argument("--sets", default="real,phantom")
    args = ap.parse_args()
    real = list(real_polygons(args.data / "annotations" / "camelyon16-train", args.min_mm, args.max_mm))
    if args.limit:
        real = real[:: max(1, len(real) // args.limit)]
    sets = {"real": real, "phantom": list(phantom_polygons(args.phantoms, args.min_mm, args.max_mm))}
    for set_name, lesions in sets.items():
        if set_name not in args.sets.split(","):
            continue
        n_micro = sum(200 < t <= 2000 for *_x, t in lesions)
        print(f"\n{set_name}: {len(lesions)} lesions of {args.min_mm}-{args.max_mm} mm ({n_micro} micro)")
        for kind in args.kinds.split(","):
            for cell in (float(c) for c in args.cells.split(",")):
                res = run(lesions, kind, cell, seed=int(cell))
                for method, r in res.items():
                    e = r["err"]
                    print(f"{kind:8s} {method} cell {cell:4.0f} um: median {np.median(e):+6.2f} um "
                          f"({np.median(e) / cell:+.2f} cell), 5-95 % [{np.percentile(e, 5) / cell:+.2f}, "
                          f"{np.percentile(e, 95) / cell:+.2f}] cell, in interval {r['inside']}/{len(e)}, "
                          f"micro as ITC {r['micro_itc']}/{r['micro']}, ITC as micro {r['itc_micro']}/{r['itc']}, "
                          f"wrong without border note {r['silent']}, split {r['split']}, {r['s']:.1f} s")


if __name__ == "__main__":
    main()
