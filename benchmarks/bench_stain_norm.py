"""Stain normalisation (issue 13, section 4): its cost per patch, and whether it helps.

    python benchmarks/bench_stain_norm.py speed                      # CPU ms/patch vs the default CNN
    python benchmarks/bench_stain_norm.py valid none.safetensors reinhard.safetensors macenko.safetensors
    python benchmarks/bench_stain_norm.py tiles none.safetensors reinhard.safetensors macenko.safetensors

``valid``: validation AUC of models trained with ``train cnn --data kaggle-sample --seed 0
--stain-norm X`` on the same split (seed 0, 20 %), with a paired bootstrap (2,000 resamples,
seed 0) of each AUC difference against the first model. ``tiles``: on the five CAMELYON17
centre tiles (~0.5 um/px, resampled to 0.972 um/px, 96 px patches with >= 50 % tissue), the
spread between centres of the mean predicted probability and of colour statistics. Data:
``--data`` (default ../shared/data beside the repository). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import REPO  # noqa: F401  (puts the repository on sys.path)
from histoviewer.core.input_spec import InputSpec
from histoviewer.core.models import stain_norm as sn
from histoviewer.core.models.model_file import load_model

P = 96
TILE_MPP, MODEL_MPP = 0.5, 0.972


def kaggle_patches(data: Path, n: int) -> np.ndarray:
    files = sorted((data / "patches" / "kaggle-sample" / "train").glob("*.tif"))[:n]
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])


def cpu_seconds(run, reps: int = 3) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return best


def bench_speed(args) -> dict:
    """Process CPU time (robust to the load of a shared machine), batches of 256."""
    import torch

    from histoviewer.core.models.registry import open_model

    torch.set_num_threads(2)
    x = kaggle_patches(args.data, 2048)
    out = {}
    model = open_model("cnn", device="cpu")
    model.predict_proba(x[:256])
    c = cpu_seconds(lambda: [model.predict_proba(x[b:b + 256]) for b in range(0, len(x), 256)])
    out["default cnn"] = {"cpu_ms_per_patch": 1000 * c / len(x)}
    for method in ("reinhard", "macenko"):
        norm = sn.fit_stain_normaliser(method, x[:1000])
        c = cpu_seconds(lambda: [norm.apply(x[b:b + 256]) for b in range(0, len(x), 256)])
        out[method] = {"cpu_ms_per_patch": 1000 * c / len(x), "cpu_s_for_39244": 39244 * c / len(x)}
    return out


def bench_valid(args) -> dict:
    from sklearn.metrics import roc_auc_score

    from histoviewer.core.patches.open import open_patch_set
    from histoviewer.core.patches.split import train_valid_split
    from histoviewer.core.training import predict_patch_set

    ps = open_patch_set(args.data / "patches" / "kaggle-sample", InputSpec(), split="train")
    _, valid_idx = train_valid_split(ps, 0.2, 0)
    y = np.asarray(ps.labels)[valid_idx].astype(int)
    probs = {Path(m).stem: predict_patch_set(load_model(m, device="cpu"), ps, valid_idx)
             for m in args.models}
    first = next(iter(probs))
    rng = np.random.default_rng(0)
    boots = [rng.integers(0, len(y), len(y)) for _ in range(2000)]
    out = {}
    for name, p in probs.items():
        row = {"auc": roc_auc_score(y, p)}
        if name != first:
            d = np.array([roc_auc_score(y[b], p[b]) - roc_auc_score(y[b], probs[first][b]) for b in boots])
            row[f"auc_minus_{first}"] = row["auc"] - roc_auc_score(y, probs[first])
            row["ci95"] = [float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))]
        out[name] = row
    return {"n_valid": len(y), "n_tumour": int(y.sum()), "models": out}


def tile_patches(path: Path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    size = round(img.width * TILE_MPP / MODEL_MPP)
    arr = np.asarray(img.resize((size, size), Image.LANCZOS))
    n = size // P
    cut = arr[:n * P, :n * P].reshape(n, P, n, P, 3).swapaxes(1, 2).reshape(-1, P, P, 3)
    return np.ascontiguousarray(cut[sn._tissue_mask(cut).mean(axis=1) >= 0.5])


def colour_stats(x: np.ndarray) -> dict:
    lab = sn.rgb_to_lab(x).reshape(-1, 3)
    return {"L": float(lab[:, 0].mean()), "a": float(lab[:, 1].mean()), "b": float(lab[:, 2].mean())}


def bench_tiles(args) -> dict:
    tiles = {t.name.split("_patient")[0]: tile_patches(t)
             for t in sorted((args.data / "tiles").glob("centre_*.jpeg"))}
    out = {"n_patches": {c: len(x) for c, x in tiles.items()},
           "colour_sd_raw": {k: float(np.std([colour_stats(x)[k] for x in tiles.values()])) for k in "Lab"}}
    for m in args.models:
        model = load_model(m, device="cpu")
        means = [float(model.predict_proba(x).mean()) for x in tiles.values()]
        row = {"mean_prob_by_centre": means, "sd_between_centres": float(np.std(means))}
        norm = sn.StainNormaliser.from_extra(model.info.extra)
        if norm is not None:
            after = [colour_stats(norm.apply(x).patches) for x in tiles.values()]
            row["colour_sd_after"] = {k: float(np.std([a[k] for a in after])) for k in "Lab"}
        out[Path(m).stem] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("speed", "valid", "tiles"))
    ap.add_argument("models", nargs="*", help="model files (valid, tiles)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    run = {"speed": bench_speed, "valid": bench_valid, "tiles": bench_tiles}[args.what]
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
