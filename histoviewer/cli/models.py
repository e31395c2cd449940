"""``histoviewer train``, ``eval-patches``, ``predict-patches`` and ``models``.

Every place a model is named also prints the demonstration warning when the model is one of
the default models trained on synthetic phantom tissue.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from histoviewer.core.errors import PatchDataError

__all__ = ["register"]

TRAIN_EXAMPLE = (
    "example (real data): histoviewer train cnn --data ~/pcam --out pcam-cnn.safetensors\n"
    "  where ~/pcam holds camelyonpatch_level_2_split_{train,valid}_{x,y}.h5 (gunzipped)"
)


def _add_data_args(p: argparse.ArgumentParser, *, default_split: str | None) -> None:
    from histoviewer.core.patches.base import LAYOUT_NAMES as LAYOUTS

    p.add_argument("--data", required=True, type=Path, help="patches: PCam HDF5 folder or _x.h5, "
                   "Kaggle folder, class folders, image folder, or slide(s) with annotations")
    p.add_argument("--layout", default="auto", choices=("auto", *LAYOUTS),
                   help="how --data is organised (default: detect)")
    p.add_argument("--patch-mpp", type=float, default=None, metavar="UM",
                   help="micrometres per pixel of patch files that do not say it")
    p.add_argument("--split", default=None, choices=("train", "valid", "test"),
                   help=f"PCam/Kaggle split to read (default: {default_split})")
    p.set_defaults(default_split=default_split)
    p.add_argument("--label", type=int, choices=(0, 1), default=None,
                   help="give every image of an unlabelled image folder this label")
    p.add_argument("--annotations", type=Path, default=None,
                   help="lesion annotations (GeoJSON or CAMELYON XML) for a single slide")
    p.add_argument("--negative-ratio", type=float, default=None,
                   help="slides: keep at most this many normal patches per tumour patch")
    p.add_argument("--max-patches-per-slide", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, mps")
    p.add_argument("--json", action="store_true", help="machine-readable output, no progress bars")


# Spelled out, not read from cnn_arch: that imports torch, seconds of start-up for --help.
CNN_ARCHITECTURES = ("compact-cnn", "strided-cnn", "resnet", "resnet50")


def register(sub) -> None:
    t = sub.add_parser(
        "train", help="train a patch classifier (cnn or handcrafted)",
        epilog=TRAIN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("kind", choices=("cnn", "handcrafted"))
    t.add_argument("--out", required=True, type=Path, help="model file to write (.safetensors)")
    _add_data_args(t, default_split="train")
    t.add_argument("--valid-data", type=Path, default=None,
                   help="a separate validation set (default: PCam's valid split when --data is a "
                        "PCam folder, else --valid-fraction of --data, whole slides kept apart)")
    t.add_argument("--valid-fraction", type=float, default=0.2)
    t.add_argument("--arch", default="compact-cnn", choices=CNN_ARCHITECTURES,
                   help="CNN only: compact-cnn (default, fast on CPU), strided-cnn (previous "
                        "default), resnet (ResNet-18-shaped), resnet50 (torchvision ResNet-50, "
                        "a GPU model; ImageNet input normalisation)")
    t.add_argument("--init", type=Path, default=None, metavar="WEIGHTS",
                   help="CNN only: start from these weights (a .safetensors file from "
                        "import-weights, or a model file of the same architecture; the head "
                        "is trained from scratch)")
    t.add_argument("--epochs", type=int, default=30, help="CNN only (default 30)")
    t.add_argument("--batch-size", type=int, default=128)
    t.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (one-cycle)")
    t.add_argument("--patience", type=int, default=5, help="CNN only: early stopping patience in epochs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--max-ram-mb", type=int, default=3072,
                   help="hold training patches in RAM up to this size, else stream")
    t.add_argument("--name", default="", help="model name stored in the file")
    t.add_argument("--demonstration", action="store_true",
                   help="mark the model as a demonstration model (synthetic training data)")
    t.set_defaults(func=run_train)

    e = sub.add_parser("eval-patches", help="evaluate a model on labelled patches")
    e.add_argument("--model", required=True, help="cnn, handcrafted or a model file")
    _add_data_args(e, default_split="test")
    e.add_argument("--threshold", type=float, default=0.5)
    e.add_argument("--roc", type=Path, default=Path("roc.png"), help="ROC curve image (PNG)")
    e.set_defaults(func=run_eval)

    pr = sub.add_parser("predict-patches",
                        help="tumour probability per patch, as a Kaggle submission CSV")
    pr.add_argument("--model", required=True, help="cnn, handcrafted or a model file")
    _add_data_args(pr, default_split="test")
    pr.add_argument("--out", required=True, type=Path, help="submission CSV (id,label)")
    pr.set_defaults(func=run_predict)

    w = sub.add_parser(
        "import-weights",
        help="convert a torchvision .pth state dict into a weights file for train --init",
        epilog="example: histoviewer import-weights resnet50-0676ba61.pth --arch resnet50 "
               "--out imagenet-resnet50.safetensors\n  (the .pth is read with "
               "torch.load(weights_only=True): tensors only, no code; nothing is downloaded)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    w.add_argument("pth", type=Path, help="torchvision checkpoint (.pth state dict)")
    w.add_argument("--arch", required=True, choices=CNN_ARCHITECTURES)
    w.add_argument("--out", required=True, type=Path, help="weights file to write (.safetensors)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=run_import_weights)

    m = sub.add_parser("models", help="list the available models and the models folder")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run_models)


def _warn_lines(info: Any) -> list[str]:
    from histoviewer.cli.hints import demo_warning

    lines = [f"model: {info.display_name()}"]
    if info.demonstration:
        lines.append(f"WARNING: {demo_warning()}")
    return lines


def _open_data(args: argparse.Namespace, path: Path, spec: Any, split: str | None) -> Any:
    """Open ``path`` as patches at ``spec``'s scale. ``split`` (else the command's default)
    only goes to the layouts that have splits, because the others refuse it."""
    from histoviewer.core.patches.open import detect_layout, open_patch_set

    layout = detect_layout(path) if args.layout == "auto" else args.layout
    if layout in ("pcam", "kaggle"):
        split = split or args.default_split
    elif args.split is not None:
        raise PatchDataError(f"--split does not apply to the {layout} layout of {path}")
    else:
        split = None
    return open_patch_set(
        path, spec, layout=layout, patch_mpp=args.patch_mpp, split=split, label=args.label,
        annotations=args.annotations, seed=getattr(args, "seed", 0),
        negative_ratio=args.negative_ratio, max_patches_per_slide=args.max_patches_per_slide,
    )


def run_train(args: argparse.Namespace) -> int:
    from histoviewer.cli.progress import cli_control
    from histoviewer.core.input_spec import InputSpec
    from histoviewer.core.models.model_file import save_model
    from histoviewer.core.training import TrainConfig, train_cnn, train_handcrafted

    spec = InputSpec()
    cfg = TrainConfig(
        architecture=args.arch, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, patience=args.patience, seed=args.seed,
        valid_fraction=args.valid_fraction, augment=not args.no_augment, device=args.device,
        max_ram_mb=args.max_ram_mb, name=args.name, demonstration=args.demonstration,
        init_weights="" if args.init is None else str(args.init),
    )
    if args.init is not None and args.kind != "cnn":
        raise PatchDataError("--init applies to CNN training only")
    control = cli_control(args.json)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else print
    with _open_data(args, args.data, spec, args.split) as data:
        valid = None
        if args.valid_data is not None:
            valid = _open_data(args, args.valid_data, spec, "valid")
        elif data.layout == "pcam" and args.data.is_dir() and args.split in (None, "train"):
            try:
                valid = _open_data(args, args.data, spec, "valid")
                log("validation: PatchCamelyon's own valid split")
            except PatchDataError:
                valid = None
        log(f"data: {data.description} ({len(data)} patches)")
        try:
            trainer = train_cnn if args.kind == "cnn" else train_handcrafted
            result = trainer(data, cfg, valid_set=valid, spec=spec, control=control, log=log)
        finally:
            if valid is not None:
                valid.close()
    info = save_model(args.out, result.classifier)
    m = result.valid_metrics
    summary = {
        "model": str(args.out), "name": info.name, "kind": info.kind,
        "architecture": info.architecture, "content_hash": info.content_hash,
        "demonstration": info.demonstration, "n_train": result.n_train,
        "n_valid": result.n_valid, "seconds": round(result.seconds, 1),
        "seconds_per_epoch": round(result.seconds_per_epoch, 2), "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "stopped_early": result.stopped_early,
        "validation": m.to_dict(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"\nwrote {args.out}  (sha256 {info.content_hash[:16]}...)")
    for line in _warn_lines(info):
        print(line)
    if info.kind == "cnn":
        runs = (f"{len(result.history)} epochs ({result.seconds_per_epoch:.1f} s each), "
                f"best epoch {result.best_epoch}")
    else:
        runs = f"regularisation C={info.extra['training']['C']:g} chosen on validation"
    print(f"training: {result.n_train} patches, validation: {result.n_valid} patches, {runs}, "
          f"{result.seconds:.0f} s total")
    print(_metrics_text(m))
    return 0


def run_import_weights(args: argparse.Namespace) -> int:
    from histoviewer.core.models.cnn_weights import import_torchvision_weights

    result = import_torchvision_weights(args.pth, args.arch, args.out)
    if args.json:
        print(json.dumps({"out": result.path, "architecture": result.architecture,
                          "n_loaded": result.n_loaded, "skipped": list(result.skipped)}, indent=2))
        return 0
    print(f"wrote {result.path}: {result.n_loaded} {result.architecture} parameter arrays")
    if result.skipped:
        print(f"not used (no counterpart in {result.architecture}): {', '.join(result.skipped)}")
    print(f"train with: histoviewer train cnn --arch {result.architecture} --init {result.path} ...")
    return 0


def _metrics_text(m: Any) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    auc = "n/a (one class only)" if m.auc is None else f"{m.auc:.4f}"
    text = (
        f"AUC {auc}   accuracy {pct(m.accuracy)}   sensitivity {pct(m.sensitivity)}   "
        f"specificity {pct(m.specificity)}   (threshold {m.threshold:g})\n"
        f"confusion matrix (rows true normal/tumour, cols predicted normal/tumour):\n"
        f"  normal  {m.tn:7d} {m.fp:7d}\n  tumour  {m.fn:7d} {m.tp:7d}"
    )
    if m.positives and m.negatives and (m.tp + m.fp == 0 or m.tn + m.fn == 0):
        side = "normal" if m.tp + m.fp == 0 else "tumour"
        text += (f"\nnote: every patch was predicted {side} at threshold {m.threshold:g}; "
                 "AUC only ranks the patches")
    return text


def run_eval(args: argparse.Namespace) -> int:
    from histoviewer.cli.progress import cli_control
    from histoviewer.core.models.metrics import binary_metrics, roc
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.models.roc_plot import write_roc_png
    from histoviewer.core.training import predict_patch_set

    model = open_model(args.model, device=args.device)
    with _open_data(args, args.data, model.input, args.split) as data:
        if data.labels is None:
            raise PatchDataError(
                f"{args.data}: the patches are unlabelled; eval-patches needs labels "
                "(pass --label 0/1 for a folder of one class)"
            )
        probs = predict_patch_set(model, data, control=cli_control(args.json))
        labels = data.labels
        description = data.description
    m = binary_metrics(labels, probs, args.threshold)
    curve = roc(labels, probs)
    roc_path = None
    if curve is not None:
        subtitle = textwrap.shorten(description, 88, placeholder=" ...")
        title = f"{model.info.name}" + (" (demonstration model)" if model.info.demonstration else "")
        roc_path = str(write_roc_png(args.roc, curve, m, title, subtitle))
    out = {
        "model": model.info.to_dict(), "data": description, "metrics": m.to_dict(),
        "roc_png": roc_path, "mean_probability": float(probs.mean()),
    }
    if model.info.demonstration:
        from histoviewer.cli.hints import demo_warning

        out["warning"] = demo_warning()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for line in _warn_lines(model.info):
        print(line)
    print(f"data: {description}")
    print(f"patches: {m.n} ({m.positives} tumour, {m.negatives} normal)")
    print(_metrics_text(m))
    print(f"ROC curve: {roc_path}" if roc_path else "ROC curve: not drawn (one class only)")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from histoviewer.cli.progress import cli_control
    from histoviewer.core.atomic import atomic_write_text
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.training import predict_patch_set

    model = open_model(args.model, device=args.device)
    with _open_data(args, args.data, model.input, args.split) as data:
        probs = predict_patch_set(model, data, control=cli_control(args.json))
        ids = list(data.ids)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "label"])
    for pid, p in zip(ids, probs, strict=True):
        writer.writerow([pid, f"{float(p):.6f}"])
    atomic_write_text(args.out, buf.getvalue())
    if args.json:
        print(json.dumps({"out": str(args.out), "patches": len(ids),
                          "model": model.info.to_dict()}, indent=2))
        return 0
    for line in _warn_lines(model.info):
        print(line)
    print(f"wrote {args.out}: {len(ids)} patches")
    return 0


def run_models(args: argparse.Namespace) -> int:
    from histoviewer.cli.hints import demo_warning
    from histoviewer.core.models.registry import available_models
    from histoviewer.core.paths import user_models_dir

    found = available_models()
    if args.json:
        print(json.dumps({
            "models_folder": str(user_models_dir()),
            "models": [{"key": a.key, "path": str(a.path), "problem": a.problem or None,
                        "info": a.info.to_dict() if a.info else None} for a in found],
            "demonstration_warning": demo_warning(),
        }, indent=2))
        return 0
    print(f"models folder (drop .safetensors model files here): {user_models_dir()}")
    for a in found:
        if a.info is None:
            print(f"  {a.key}: unusable: {a.problem}")
            continue
        auc = a.info.valid_auc
        auc_text = f", validation AUC {auc:.3f}" if auc is not None else ""
        print(f"  {a.key}: {a.info.display_name()}{auc_text}")
        print(f"      {a.path}  sha256 {a.info.content_hash[:16]}...")
    if any(a.info and a.info.demonstration for a in found):
        print(f"\nWARNING: default models are {demo_warning()}")
    return 0
