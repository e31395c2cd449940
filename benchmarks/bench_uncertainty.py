"""The uncertainty map (issue 16): what it costs and whether it means something.

Cost: the TTA uncertainty map (8 views a patch, ``inference.uncertainty_map``) against the
plain probability map of the same region, both through the same pipeline
(``classify_cells``), same model, same cells, measured in this run: a phantom node and the
real CMU-1-Small-Region.svs.

Meaning: on held-out labelled patches, do the most uncertain patches hold the errors? For
each model: the kaggle-sample test part (real PatchCamelyon patches the model never trained
on, the model's recorded split) and patches cut from a phantom slide of a seed no model
trained on; each patch classified plainly (view 0, what the map shows) at the model's
operating point; patches ranked by TTA uncertainty; error rate of the most uncertain decile
against the least uncertain decile, and the AUC of the uncertainty as a detector of errors.
Also: the AUC of the TTA mean against the plain probability.

    PYTHONPATH=. nice -n 10 python benchmarks/bench_uncertainty.py [--models cnn handcrafted] \\
        [--work /tmp/bench-uncertainty] [--json out.json]

Needs ../shared/data (kaggle-sample, CMU-1-Small-Region.svs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from histoviewer.core.explain.tta import model_threshold, tta_predict
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.grid import PredictionGrid
from histoviewer.core.inference.pipeline import classify_cells
from histoviewer.core.inference.regions import RegionCutter
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.inference.uncertainty_map import (
    compute_uncertainty,
    new_uncertainty_grid,
)
from histoviewer.core.models.registry import open_model
from histoviewer.core.patches.open import open_patch_set
from histoviewer.core.patches.slide_patches import open_slide_patches
from histoviewer.core.patches.split import select_part
from histoviewer.core.phantom import write_phantom
from histoviewer.core.slide import open_slide

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/data")


def cost(model, slide_path: Path, region=None) -> dict:
    """Seconds of the plain map and of the uncertainty map over the same tissue cells."""
    with open_slide(slide_path) as reader:
        info = reader.info
        spec = model.input
        g = GridGeometry.for_slide(
            info.dimensions, info.mpp, spec.mpp, spec.patch_px, None
        )
        tissue = grid_tissue(reader, g)
        cells = np.flatnonzero(tissue.reshape(-1))
        if region is not None:
            cells = np.intersect1d(cells, g.cells_in_rect(*region))
        fast = TiffRegionSource.open(slide_path, reader)
        cutter = RegionCutter(reader, g, source=fast)
        try:
            # each measured twice, alternating, the faster run kept: the first run of a shape
            # pays one-off costs (allocator, kernels) and the machine is shared
            plain_s = unc_s = float("inf")
            for _ in range(2):
                plain = PredictionGrid(g, tissue)
                t0 = time.perf_counter()
                t = classify_cells(plain, cutter, model, cells)
                if time.perf_counter() - t0 < plain_s:
                    plain_s, times = time.perf_counter() - t0, t
                unc = new_uncertainty_grid(g, tissue)
                t0 = time.perf_counter()
                t = compute_uncertainty(unc, cutter, model, cells)
                if time.perf_counter() - t0 < unc_s:
                    unc_s, utimes = time.perf_counter() - t0, t
        finally:
            if fast is not None:
                fast.close()
    values, state = unc.snapshot()
    done = values[state == 1]
    return {
        "slide": slide_path.name,
        "patches": int(cells.size),
        "plain_s": round(plain_s, 2),
        "plain_model_s": round(times.model_s, 2),
        "uncertainty_s": round(unc_s, 2),
        "uncertainty_model_s": round(utimes.model_s, 2),
        "ratio": round(unc_s / max(plain_s, 1e-9), 2),
        "uncertainty_median": round(float(np.median(done)), 4) if done.size else None,
        "uncertainty_p90": round(float(np.percentile(done, 90)), 4)
        if done.size
        else None,
    }


def meaning(model, patches: np.ndarray, labels: np.ndarray, name: str) -> dict:
    """Errors among the most / least uncertain tenth of held-out patches."""
    thr = model_threshold(model)
    r = tta_predict(model, patches, thr)
    wrong = (r.plain_probability >= thr) != (labels == 1)
    order = np.argsort(r.uncertainty, kind="stable")
    k = max(1, len(order) // 10)
    least, most = order[:k], order[-k:]
    err_auc = (
        roc_auc_score(wrong, r.uncertainty)
        if 0 < wrong.sum() < len(wrong)
        else float("nan")
    )
    return {
        "data": name,
        "patches": len(labels),
        "tumour": int(labels.sum()),
        "threshold": round(thr, 3),
        "error_rate_all": round(float(wrong.mean()), 4),
        "error_rate_most_uncertain_decile": round(float(wrong[most].mean()), 4),
        "error_rate_least_uncertain_decile": round(float(wrong[least].mean()), 4),
        "share_of_errors_in_most_uncertain_decile": round(
            float(wrong[most].sum() / max(wrong.sum(), 1)), 4
        ),
        "uncertainty_auc_for_errors": round(float(err_auc), 4),
        "uncertainty_median": round(float(np.median(r.uncertainty)), 4),
        "uncertainty_p90": round(float(np.percentile(r.uncertainty, 90)), 4),
        "auc_plain": round(float(roc_auc_score(labels, r.plain_probability)), 4),
        "auc_tta_mean": round(float(roc_auc_score(labels, r.mean_probability)), 4),
        "disagreeing_patches": round(float((r.disagreement > 0).mean()), 4),
    }


def kaggle_test(model) -> tuple[np.ndarray, np.ndarray]:
    ps = open_patch_set(SHARED / "patches" / "kaggle-sample", model.input)
    sel = select_part(ps, model.info.extra.get("sources", []), "test")
    return ps.read(sel.indices), np.asarray(ps.labels)[sel.indices]


def big_phantom(work: Path) -> Path:
    """A 6 x 6 mm phantom node of a seed no model trained on (made once)."""
    path = work / "phantom-401.tiff"
    if not path.exists():
        write_phantom(
            path,
            width=24000,
            height=24000,
            mpp=0.25,
            lesions="macro:2.2,micro:0.5",
            seed=401,
        )
    return path


def phantom_patches(model, work: Path) -> tuple[np.ndarray, np.ndarray]:
    ps = open_slide_patches(big_phantom(work), model.input, negative_ratio=1.5, seed=0)
    idx = np.arange(len(ps))
    return ps.read(idx), np.asarray(ps.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["cnn", "handcrafted"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-uncertainty"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--skip-cost", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    node = args.work / "node.tiff"
    if not node.exists():
        write_phantom(
            node, width=6000, height=6000, mpp=0.25, lesions="micro:0.7", seed=5
        )
    out = {
        "machine": f"{platform.node()} {os.cpu_count()} cpu, {platform.python_version()}",
        "models": {},
    }
    for spec in args.models:
        model = open_model(spec, "cpu")
        res: dict = {"name": model.info.name}
        if not args.skip_cost:
            res["cost"] = [
                cost(model, node),
                cost(model, SHARED / "slides" / "CMU-1-Small-Region.svs"),
                cost(model, big_phantom(args.work)),
            ]
            for c in res["cost"]:
                print(f"[{model.info.name}] cost {c}", flush=True)
        res["meaning"] = []
        for name, (x, y) in (
            ("kaggle-sample test part", kaggle_test(model)),
            ("phantom slide seed 401 (unseen)", phantom_patches(model, args.work)),
        ):
            m = meaning(model, x, y, name)
            res["meaning"].append(m)
            print(f"[{model.info.name}] meaning {m}", flush=True)
        out["models"][spec] = res
        model.close()
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
