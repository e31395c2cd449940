"""Benchmark: patch classifier throughput and training time per epoch.

    .venv/bin/python benchmarks/bench_models.py            # CPU, ~3 minutes
    .venv/bin/python benchmarks/bench_models.py --device cuda --json

For each CNN architecture and batch size it times ``CnnClassifier.predict_proba`` (our
inference path: uint8 to the device, batch norm folded, channels-last, inference mode, fp16
autocast on CUDA) against a same-run baseline: the same network called the textbook way
(``model.eval()`` under ``torch.no_grad()``, float NCHW contiguous input, batch norm kept).
The handcrafted model is timed with random patches. Training time per epoch is timed on
``--train-patches`` toy patches with augmentation. Numbers are patches per second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from histoviewer.core.input_spec import InputSpec  # noqa: E402
from histoviewer.core.models.classifier import ModelInfo  # noqa: E402
from histoviewer.core.models.cnn import CnnClassifier  # noqa: E402
from histoviewer.core.training import TrainConfig, train_cnn  # noqa: E402


def _rate(fn, n_per_call: int, min_seconds: float) -> float:
    fn()  # warm-up (allocations, oneDNN primitive cache, CUDA kernels)
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds and calls >= 3:
            return calls * n_per_call / dt


def bench_cnn(arch: str, device: str, batch_sizes: list[int], min_seconds: float) -> list[dict]:
    torch.manual_seed(0)
    model = CnnClassifier.new(ModelInfo(name=arch, kind="cnn", architecture=arch), device=device)
    net = model.network.to(model.device).eval()
    rows = []
    rng = np.random.default_rng(0)
    for bs in batch_sizes:
        patches = rng.integers(0, 256, (bs, 96, 96, 3), dtype=np.uint8)
        model.batch_size = bs

        def ours():
            model.predict_proba(patches)

        def baseline():
            with torch.no_grad():
                x = torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous().float()
                x = ((x / 255 - 0.5) / 0.25).to(model.device)
                torch.sigmoid(net(x)).cpu().numpy()

        r_ours = _rate(ours, bs, min_seconds)
        r_base = _rate(baseline, bs, min_seconds)
        rows.append({"model": arch, "device": model.device.type, "batch": bs,
                     "patches_per_s": round(r_ours), "baseline_patches_per_s": round(r_base),
                     "ratio": round(r_ours / r_base, 2)})
        print(f"{arch:12s} {model.device.type:4s} batch {bs:5d}: {r_ours:8.0f} patches/s   "
              f"baseline {r_base:8.0f}   x{r_ours / r_base:.2f}", flush=True)
    return rows


def bench_handcrafted(batch_sizes: list[int], min_seconds: float) -> list[dict]:
    try:
        from histoviewer.core.models.features import FEATURE_NAMES
        from histoviewer.core.models.handcrafted import fit_handcrafted
    except ImportError as exc:
        print(f"handcrafted model unavailable: {exc}")
        return []
    rng = np.random.default_rng(0)
    f = rng.normal(size=(64, len(FEATURE_NAMES))).astype(np.float32)
    model = fit_handcrafted(f, np.arange(64) % 2, spec=InputSpec())
    rows = []
    for bs in batch_sizes:
        patches = rng.integers(0, 256, (bs, 96, 96, 3), dtype=np.uint8)
        r = _rate(lambda p=patches: model.predict_proba(p), bs, min_seconds)
        rows.append({"model": "handcrafted", "device": "cpu", "batch": bs,
                     "patches_per_s": round(r)})
        print(f"{'handcrafted':12s} cpu  batch {bs:5d}: {r:8.0f} patches/s", flush=True)
    return rows


def bench_training(arch: str, device: str, n: int, epochs: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "core"))
    from model_helpers import ArrayPatchSet, toy_patches

    x, y = toy_patches(n, seed=0)
    xv, yv = toy_patches(256, seed=1)
    spec = InputSpec()
    cfg = TrainConfig(architecture=arch, epochs=epochs, patience=epochs, device=device,
                      batch_size=128)
    res = train_cnn(ArrayPatchSet(x, y, spec), cfg, valid_set=ArrayPatchSet(xv, yv, spec))
    per_epoch = [h.seconds for h in res.history]
    row = {"model": arch, "device": device, "train_patches": n, "epochs": len(per_epoch),
           "seconds_per_epoch": round(float(np.median(per_epoch)), 2),
           "train_patches_per_s": round(n / float(np.median(per_epoch)))}
    print(f"training {arch:12s} {device}: {row['seconds_per_epoch']:.2f} s/epoch on {n} patches "
          f"({row['train_patches_per_s']} patches/s incl. augmentation and validation)",
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", default="1,16,64,256,1024")
    ap.add_argument("--archs", default="compact-cnn,strided-cnn,resnet")
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--train-patches", type=int, default=4096)
    ap.add_argument("--train-epochs", type=int, default=2)
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores, load {load:.1f}"
          + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "load_avg": load,
           "inference": [], "training": []}
    for arch in args.archs.split(","):
        out["inference"] += bench_cnn(arch, args.device, sizes, args.min_seconds)
    if args.device == "cpu":
        out["inference"] += bench_handcrafted([1, 64, 256, 1024], args.min_seconds)
    if not args.skip_training:
        for arch in args.archs.split(","):
            out["training"].append(
                bench_training(arch, args.device, args.train_patches, args.train_epochs))
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
