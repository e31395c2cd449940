"""``histoviewer train``, ``eval-patches``, ``predict-patches`` and ``models``.

Every place a model is named also prints what the model says of itself (``ModelInfo.caution``):
what it was trained on and that it is not validated for clinical use, or, for a
demonstration model (trained on synthetic phantom tissue only), the demonstration warning.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from histoviewer import __version__
from histoviewer.core.errors import PatchDataError
from histoviewer.core.strict_json import strict_dumps

__all__ = ["register"]

TRAIN_EXAMPLE = (
    "example (real data): histoviewer train cnn --data ~/pcam --out pcam-cnn.safetensors\n"
    "  where ~/pcam holds camelyonpatch_level_2_split_{train,valid}_{x,y}.h5 (gunzipped)\n"
    "example (Kaggle layout plus phantom slides, validation and test from the real patches only):\n"
    "  histoviewer train cnn --data kaggle-sample --data phantoms/ --valid-from 1 --out cnn.safetensors\n"
    "\n"
    "Held-out parts: data with no validation split of its own (everything but a PCam folder or\n"
    "--valid-data) is cut into train / valid / test per source: stratified by label, whole slides\n"
    "kept together, --valid-fraction and --test-fraction (default 0.15 each, the test part rounded\n"
    "up), --split-seed (default 0). Training never reads the test part; the valid part chooses the\n"
    "epoch (CNN) or regularisation (handcrafted), fits the calibration and the operating point.\n"
    "The model file records the rule and a hash of the test ids: evaluate on exactly the unseen\n"
    "patches with 'histoviewer eval-patches --data SAME --part test'."
)
EVAL_EPILOG = (
    "--part train/valid/test re-cuts --data with the split rule recorded in the model (it must be\n"
    "a source the model was trained on) and checks the test part against the recorded hash.\n"
    "ECE: expected calibration error of the tumour probability, 15 equal-width bins over [0, 1].\n"
    "Brier: mean squared difference between probability and label."
)


def _add_data_args(p: argparse.ArgumentParser, *, default_split: str | None, multi_data: bool = False) -> None:
    from histoviewer.core.patches.base import LAYOUT_NAMES as LAYOUTS

    p.add_argument("--data", required=True, type=Path, action="append" if multi_data else "store",
                   help="patches: PCam HDF5 folder or _x.h5, Kaggle folder, class folders, image "
                        "folder, or slide(s) with annotations"
                        + ("; repeat to train on several sources (numbered 1, 2, ... in order)" if multi_data else ""))
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
CNN_ARCHITECTURES = ("compact-cnn", "strided-cnn", "resnet", "resnet50", "screen-cnn")


def register(sub) -> None:
    t = sub.add_parser(
        "train", help="train a patch classifier (cnn or handcrafted) or a low-magnification screening model (screen)",
        epilog=TRAIN_EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("kind", choices=("cnn", "handcrafted", "screen"),
                   help="screen: a small CNN reading each 10x patch at 2.5x (24 px at 3.888 um/px, "
                        "the same data downsampled 4x), its threshold chosen for --target-sensitivity "
                        "(default 0.99) on validation; analyze's screened strategy uses it")
    t.add_argument("--out", type=Path, default=None,
                   help="model file to write (.safetensors); required, except for a fine-tune "
                        "(default there: a new file in the user models folder)")
    t.add_argument("--overwrite", action="store_true", help="replace --out when it exists (default: refuse)")
    _add_data_args(t, default_split="train", multi_data=True)
    t.add_argument("--valid-data", type=Path, default=None,
                   help="a separate validation set (default: PCam's valid split when --data is a "
                        "PCam folder, else --valid-fraction of --data, whole slides kept apart)")
    t.add_argument("--valid-fraction", type=float, default=0.15,
                   help="share of each --valid-from source held out for validation (default 0.15)")
    t.add_argument("--test-fraction", type=float, default=0.15,
                   help="share of each --valid-from source held out as a test part that training "
                        "never reads (default 0.15, at least this much)")
    t.add_argument("--valid-from", default="all", metavar="all|N[,N...]",
                   help="the --data sources (1 = the first) validation and test are drawn from; the "
                        "others only train (default all). Draw them from real tissue: calibration and "
                        "the operating point are measured there")
    t.add_argument("--split-seed", type=int, default=0,
                   help="seed of the train/valid/test cut (default 0; apart from --seed, so the test "
                        "part stays the same when the training seed changes)")
    t.add_argument("--calibrate", default="auto",
                   choices=("auto", "temperature", "platt", "isotonic", "none"),
                   help="probability calibration fitted on the validation part (default auto: "
                        "temperature scaling for cnn, Platt scaling for handcrafted)")
    t.add_argument("--operating-point", default=None, choices=("youden", "sensitivity"),
                   help="how the threshold results are read at is chosen on the validation part: "
                        "youden (default: max sensitivity + specificity - 1; fewest false lesions "
                        "on whole slides) or sensitivity (screening: see --target-sensitivity; the "
                        "default for kind screen)")
    t.add_argument("--target-sensitivity", type=float, default=None,
                   help="with --operating-point sensitivity: the highest threshold with at least "
                        "this validation sensitivity (default 0.95; 0.99 for kind screen)")
    t.add_argument("--screen-margin", type=int, default=None, metavar="PATCHES",
                   help="screen only: rings of neighbouring patches the full model classifies "
                        "around every patch the screen flags (default 1)")
    t.add_argument("--caveat", default="",
                   help="the model's one-sentence caveat (default: written from the training data, "
                        "e.g. 'research model trained on 6,657 real PatchCamelyon patches; not "
                        "validated for clinical use')")
    t.add_argument("--arch", default=None, choices=CNN_ARCHITECTURES,
                   help="CNN only: compact-cnn (default, fast on CPU), strided-cnn (previous "
                        "default), resnet (ResNet-18-shaped), resnet50 (torchvision ResNet-50, "
                        "a GPU model; ImageNet input normalisation); kind screen: screen-cnn")
    t.add_argument("--init", type=Path, default=None, metavar="WEIGHTS|MODEL",
                   help="CNN: start from these weights (a .safetensors file from import-weights; "
                        "the head is trained from scratch). With --layout slides and a MODEL (cnn, "
                        "handcrafted, a model file): fine-tune that model from the slides' "
                        "corrections (accepted/rejected hotspots, tumour/normal annotations from the "
                        "viewer's saved annotations, a stem.geojson beside the slide or --annotations)")
    t.add_argument("--epochs", type=int, default=None, help="CNN only (default 30; fine-tune 8)")
    t.add_argument("--batch-size", type=int, default=None, help="(default 128; fine-tune 32)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (one-cycle; default 3e-3, fine-tune 1e-3)")
    t.add_argument("--patience", type=int, default=None,
                   help="CNN only: early stopping patience in epochs (default 5; fine-tune 4)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--stain-norm", default="none", choices=("none", "reinhard", "macenko"),
                   help="stain normalisation fitted on the training patches and stored in the model: "
                        "every patch is normalised before the model reads it (default none)")
    t.add_argument("--max-ram-mb", type=int, default=3072,
                   help="hold training patches in RAM up to this size, else stream")
    t.add_argument("--name", default="", help="model name stored in the file")
    t.add_argument("--demonstration", action="store_true",
                   help="mark the model as a demonstration model (synthetic training data)")
    t.set_defaults(func=run_train)

    e = sub.add_parser("eval-patches", help="evaluate a model on labelled patches",
                       epilog=EVAL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", required=True, help="cnn, handcrafted, cnn-resnet or a model file")
    _add_data_args(e, default_split="test")
    e.add_argument("--part", default="all", choices=("all", "train", "valid", "test"),
                   help="evaluate one part of the model's own train/valid/test cut of --data "
                        "(default all of --data)")
    e.add_argument("--record", default=None, metavar="NAME",
                   help="store these numbers in the model file's header as evaluation NAME (the "
                        "weights and their hash stay the same), so the model card carries them")
    e.add_argument("--threshold", type=float, default=None,
                   help="probability threshold for sensitivity/specificity (default: the model's "
                        "operating point, else 0.5)")
    e.add_argument("--roc", type=Path, default=None, metavar="FILE.png",
                   help="also draw the ROC curve to this PNG (none unless asked: nothing is written "
                        "into the current folder unasked)")
    e.add_argument("--calibration", type=Path, default=None, metavar="FILE.png",
                   help="also draw the reliability diagram (calibration curve) to this PNG")
    e.add_argument("--top-losses", type=int, default=None, metavar="N",
                   help="list the N most confident false positives and false negatives (with "
                        "--gallery: draw them; default 12 there)")
    e.add_argument("--gallery", type=Path, default=None, metavar="DIR",
                   help="write the top losses as a gallery folder (index.html: each patch as the model "
                        "read it, its label, P and its Grad-CAM or feature terms; the confusion matrix "
                        "beside the ROC and calibration plots)")
    e.add_argument("--overwrite", action="store_true", help="replace --gallery when it exists (default: refuse)")
    e.set_defaults(func=run_eval)

    pr = sub.add_parser("predict-patches",
                        help="tumour probability per patch, as a Kaggle submission CSV")
    pr.add_argument("--model", required=True, help="cnn, handcrafted, cnn-resnet or a model file")
    _add_data_args(pr, default_split="test")
    pr.add_argument("--out", required=True, type=Path, help="submission CSV (id,label)")
    pr.add_argument("--overwrite", action="store_true", help="replace --out when it exists (default: refuse)")
    pr.set_defaults(func=run_predict)

    d = sub.add_parser(
        "add-domain", help="fit a model's domain profile (what its training tissue looks like) and "
        "store it in the model file, so analyses say when a slide is unlike that tissue")
    d.add_argument("model", type=Path, help="model file (.safetensors)")
    d.add_argument("--data", required=True, type=Path, action="append",
                   help="the model's training patches (repeat for several sets, e.g. real + phantom)")
    d.add_argument("--layout", default="auto", help="how each --data is organised (default: detect)")
    d.add_argument("--out", type=Path, default=None, help="model file to write (default: rewrite MODEL)")
    d.add_argument("--seed", type=int, default=None, help="split seed (default: the model's training seed)")
    d.add_argument("--valid-fraction", type=float, default=None,
                   help="validation fraction (default: the model's training fraction)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=run_add_domain)
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
    w.add_argument("--overwrite", action="store_true", help="replace --out when it exists (default: refuse)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=run_import_weights)

    m = sub.add_parser("models", help="list the available models and the models folder")
    m.add_argument("--json", action="store_true")
    m.add_argument("--restamp", nargs="+", type=Path, metavar="FILE",
                   help="re-stamp model files of an older format (whose hash covered the weights "
                        "only) so that the hash covers their description too; the weights are "
                        "checked against the old hash and kept byte for byte. Check each file's "
                        "description first: it is taken as it stands")
    m.set_defaults(func=run_models)


def _warn_lines(info: Any) -> list[str]:
    from histoviewer.cli.hints import caution_line

    lines = [f"model: {info.display_name()}"]
    if info.demonstration:
        lines.append(f"WARNING: {caution_line(info.caution, True)}")
    else:
        lines.append(f"  {info.caution}")
    if info.operating_point is not None:
        lines.append(f"  operating point: {info.operating_point.describe()}")
    return lines


def _open_data(args: argparse.Namespace, path: Path, spec: Any, split: str | None,
               *, one_of_several: bool = False) -> Any:
    """Open ``path`` as patches at ``spec``'s scale. ``split`` (else the command's default)
    only goes to the layouts that have splits, because the others refuse it. One of several
    sources (``train --data A --data B``) gets the slide and label options only when its layout
    takes them."""
    from histoviewer.core.patches.open import detect_layout, open_patch_set

    layout = detect_layout(path) if args.layout == "auto" else args.layout
    if layout in ("pcam", "kaggle"):
        split = split or args.default_split
        if layout == "kaggle" and split == "test" and args.split is None:
            split = "train"  # Kaggle's test split has no labels: evaluation reads the train split
    elif args.split is not None and not one_of_several:
        raise PatchDataError(f"--split does not apply to the {layout} layout of {path}")
    else:
        split = None
    slides = not one_of_several or layout == "slides"
    return open_patch_set(
        path, spec, layout=layout, patch_mpp=args.patch_mpp, split=split,
        label=args.label if not one_of_several or layout == "images" else None,
        annotations=args.annotations if slides else None, seed=getattr(args, "seed", 0),
        negative_ratio=args.negative_ratio if slides else None,
        max_patches_per_slide=args.max_patches_per_slide if slides else None,
    )


def _valid_from(text: str, n_sources: int) -> tuple[int, ...] | None:
    """``--valid-from``: "all" -> None, "1,3" -> (0, 2) (0-based)."""
    if text.strip().lower() == "all":
        return None
    try:
        picked = tuple(sorted({int(v) - 1 for v in text.split(",") if v.strip()}))
    except ValueError:
        picked = ()
    if not picked or any(not 0 <= k < n_sources for k in picked):
        raise PatchDataError(f"--valid-from takes 'all' or source numbers 1..{n_sources} "
                             f"(the --data options in order), got {text!r}")
    return picked


def _check_out(args: argparse.Namespace, *outs: Path | None, overwrite: bool) -> None:
    """Before any work: no output over a file the command reads (data, annotations, the
    model, initial weights), nor over an existing file unless ``overwrite``."""
    from histoviewer.core.atomic import check_output

    data = getattr(args, "data", None)
    inputs = [*(data if isinstance(data, list) else [data]), *(getattr(args, name, None) for name in (
        "valid_data", "annotations", "init", "pth", "model"))]
    for out in outs:
        if out is not None:
            check_output(out, inputs=[p for p in inputs if p is not None], overwrite=overwrite)


def run_train(args: argparse.Namespace) -> int:
    _check_out(args, args.out, overwrite=args.overwrite)
    from histoviewer.cli.finetune import is_finetune, run_finetune

    if is_finetune(args):
        return run_finetune(args)
    if args.out is None:
        raise PatchDataError("--out is required (the model file to write)")
    for name, default in (("epochs", 30), ("batch_size", 128), ("lr", 3e-3), ("patience", 5)):
        if getattr(args, name) is None:
            setattr(args, name, default)
    from histoviewer.cli.progress import cli_control
    from histoviewer.core.input_spec import InputSpec
    from histoviewer.core.models.model_file import save_model
    from histoviewer.core.patches.concat import ConcatPatchSet
    from histoviewer.core.training import TrainConfig, train_cnn, train_handcrafted

    screen = args.kind == "screen"
    if args.screen_margin is not None and not screen:
        raise PatchDataError("--screen-margin applies to kind screen only")
    from histoviewer.core.models.screen_model import (
        DEFAULT_SCREEN_TARGET,
        SCREEN_ARCHITECTURE,
        SCREEN_INPUT,
    )

    spec = SCREEN_INPUT if screen else InputSpec()
    default_arch = SCREEN_ARCHITECTURE if screen else "compact-cnn"
    paths: list[Path] = list(args.data)
    cfg = TrainConfig(
        architecture=args.arch or default_arch, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, patience=args.patience, seed=args.seed,
        valid_fraction=args.valid_fraction, test_fraction=args.test_fraction,
        valid_from=_valid_from(args.valid_from, len(paths)), split_seed=args.split_seed,
        calibration=args.calibrate,
        target_sensitivity=args.target_sensitivity or (DEFAULT_SCREEN_TARGET if screen else 0.95),
        operating_rule=args.operating_point or ("sensitivity" if screen else "youden"), caveat=args.caveat,
        augment=not args.no_augment, device=args.device,
        max_ram_mb=args.max_ram_mb, name=args.name, demonstration=args.demonstration,
        stain_norm=args.stain_norm,
        init_weights="" if args.init is None else str(args.init),
    )
    if args.init is not None and args.kind == "handcrafted":
        raise PatchDataError("--init applies to CNN training only")
    control = cli_control(args.json)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else print
    several = len(paths) > 1
    parts: list[Any] = []
    try:
        for path in paths:
            parts.append(_open_data(args, path, spec, args.split, one_of_several=several))
    except BaseException:
        for p in parts:
            p.close()
        raise
    with ConcatPatchSet(parts) if several else parts[0] as data:
        valid = None
        if args.valid_data is not None:
            valid = _open_data(args, args.valid_data, spec, "valid")
        elif not several and data.layout == "pcam" and paths[0].is_dir() and args.split in (None, "train"):
            try:
                valid = _open_data(args, paths[0], spec, "valid")
                log("validation: PatchCamelyon's own valid split")
            except PatchDataError:
                valid = None
        log(f"data: {data.description} ({len(data)} patches)")
        try:
            trainer = train_handcrafted if args.kind == "handcrafted" else train_cnn
            result = trainer(data, cfg, valid_set=valid, spec=spec, control=control, log=log)
        finally:
            if valid is not None:
                valid.close()
    if screen:
        from histoviewer.core.models.screen_model import (
            DEFAULT_SCREEN_MARGIN,
            mark_screening,
        )

        margin = DEFAULT_SCREEN_MARGIN if args.screen_margin is None else args.screen_margin
        result.classifier.info = mark_screening(result.classifier.info, margin)
    info = save_model(args.out, result.classifier)
    m = result.valid_metrics
    summary = {
        "model": str(args.out), "name": info.name, "kind": info.kind,
        "architecture": info.architecture, "content_hash": info.content_hash,
        "demonstration": info.demonstration, "n_train": result.n_train,
        "n_valid": result.n_valid, "n_test": result.n_test, "seconds": round(result.seconds, 1),
        "seconds_per_epoch": round(result.seconds_per_epoch, 2), "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "stopped_early": result.stopped_early,
        "validation": m.to_dict(), "caveat": info.caveat,
        "operating_point": None if info.operating_point is None else info.operating_point.to_dict(),
        "calibration": info.extra.get("calibration"),
        "threshold_options": info.extra.get("threshold_options"),
        "valid_ece": info.metrics.get("valid_ece"), "sources": info.extra.get("sources"),
    }
    if args.json:
        print(strict_dumps(summary, indent=2))
        return 0
    print(f"\nwrote {args.out}  (sha256 {info.content_hash[:16]}...)")
    for line in _warn_lines(info):
        print(line)
    if info.kind == "cnn":
        runs = (f"{len(result.history)} epochs ({result.seconds_per_epoch:.1f} s each), "
                f"best epoch {result.best_epoch}")
    else:
        runs = f"regularisation C={info.extra['training']['C']:g} chosen on validation"
    print(f"training: {result.n_train} patches, validation: {result.n_valid} patches, "
          f"test (held out): {result.n_test} patches, {runs}, {result.seconds:.0f} s total")
    print(f"caveat: {info.caveat}")
    if info.operating_point is not None:
        print(f"operating point ({info.operating_point.target}): {info.operating_point.describe()}")
    print("validation at the operating point:")
    print(_metrics_text(m))
    return 0


def run_import_weights(args: argparse.Namespace) -> int:
    _check_out(args, args.out, overwrite=args.overwrite)
    from histoviewer.core.models.cnn_weights import import_torchvision_weights

    result = import_torchvision_weights(args.pth, args.arch, args.out)
    if args.json:
        print(strict_dumps({"out": result.path, "architecture": result.architecture,
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
    _check_out(args, args.roc, args.calibration, overwrite=True)  # pictures: replaced, never over an input
    if args.gallery is not None:
        from histoviewer.cli.explain import check_gallery

        check_gallery(args)
    from histoviewer.cli.progress import cli_control
    from histoviewer.core.models.calibration_metrics import calibration_metrics
    from histoviewer.core.models.metrics import binary_metrics, roc
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.models.reliability_plot import write_reliability_png
    from histoviewer.core.models.roc_plot import write_roc_png
    from histoviewer.core.patches.split import select_part
    from histoviewer.core.training import predict_patch_set

    model = open_model(args.model, device=args.device)
    with _open_data(args, args.data, model.input, args.split) as data:
        if data.labels is None:
            raise PatchDataError(
                f"{args.data}: the patches are unlabelled; eval-patches needs labels "
                "(pass --label 0/1 for a folder of one class)"
            )
        chosen = select_part(data, model.info.extra.get("sources") or [], args.part)
        probs = predict_patch_set(model, data, chosen.indices, control=cli_control(args.json))
        labels = data.labels[chosen.indices]
        description = data.description + ("" if args.part == "all" else f", {args.part} part")
    point = model.info.operating_point
    if args.threshold is not None:
        threshold, threshold_source = args.threshold, "given"
    elif point is not None:
        threshold, threshold_source = point.threshold, "the model's operating point"
    else:
        threshold, threshold_source = 0.5, "default 0.5 (the model states no operating point)"
    m = binary_metrics(labels, probs, threshold)
    cal = calibration_metrics(labels, probs)
    curve = roc(labels, probs)
    subtitle = textwrap.shorten(description, 88, placeholder=" ...")
    title = f"{model.info.name}" + (" (demonstration model)" if model.info.demonstration else "")
    roc_path = None
    if curve is not None and args.roc is not None:
        roc_path = str(write_roc_png(args.roc, curve, m, title, subtitle))
    cal_path = None
    if args.calibration is not None:
        cal_path = str(write_reliability_png(args.calibration, cal, title, subtitle))
    losses = None
    if args.top_losses is not None or args.gallery is not None:
        from histoviewer.cli.explain import eval_top_losses

        losses = eval_top_losses(args, model, chosen.indices, labels, probs, m, curve, cal, title, subtitle)
    out = {
        "model": model.info.to_dict(), "data": description, "part": args.part,
        "auc": m.auc, "ece": cal.ece, "brier": cal.brier,
        "threshold": threshold, "threshold_source": threshold_source,
        "sensitivity": m.sensitivity, "specificity": m.specificity,
        "metrics": m.to_dict(), "calibration": cal.to_dict(),
        "roc_png": roc_path, "calibration_png": cal_path, "mean_probability": float(probs.mean()),
        "seen_by_training": chosen.seen_by_training, "split_note": chosen.note,
        "caveat": model.info.caution,
    }
    if model.info.demonstration:
        from histoviewer.cli.hints import demo_warning

        out["warning"] = demo_warning()
    if losses is not None:
        out["top_losses"] = losses
    if args.record:
        from histoviewer.core.models.model_file import record_evaluation
        from histoviewer.core.models.registry import resolve_model_path

        record_evaluation(resolve_model_path(args.model), args.record, {
            "data": description, "part": args.part, "n": m.n, "positives": m.positives,
            "negatives": m.negatives, "auc": m.auc, "ece": cal.ece, "brier": cal.brier,
            "threshold": threshold, "threshold_source": threshold_source,
            "sensitivity": m.sensitivity, "specificity": m.specificity,
            "seen_by_training": chosen.seen_by_training, "software_version": __version__,
        })
        out["recorded_as"] = args.record
    if args.json:
        print(strict_dumps(out, indent=2))
        return 0
    for line in _warn_lines(model.info):
        print(line)
    if not model.info.demonstration:
        print(f"caveat: {model.info.caution}")
    if args.record:
        print(f"recorded in the model file's header as evaluation {args.record!r}")
    print(f"data: {description}")
    print(f"{'WARNING: ' if chosen.seen_by_training else ''}{chosen.note}")
    print(f"patches: {m.n} ({m.positives} tumour, {m.negatives} normal)")
    print(f"threshold {threshold:g}: {threshold_source}"
          + (f" ({point.describe()})" if point is not None and args.threshold is None else ""))
    print(_metrics_text(m))
    print(f"calibration: ECE {cal.ece:.4f} ({cal.n_bins} equal-width bins), Brier {cal.brier:.4f}")
    print(f"ROC curve: {roc_path}" if roc_path else "ROC curve: not drawn (--roc FILE.png draws it)"
          if curve is not None else "ROC curve: not drawn (one class only)")
    if cal_path:
        print(f"reliability diagram: {cal_path}")
    if losses is not None:
        from histoviewer.cli.explain import print_top_losses

        print_top_losses(losses)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    _check_out(args, args.out, overwrite=args.overwrite)
    from histoviewer.cli.progress import cli_control
    from histoviewer.core.atomic import atomic_write_text
    from histoviewer.core.csv_table import csv_text
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.training import predict_patch_set

    model = open_model(args.model, device=args.device)
    with _open_data(args, args.data, model.input, args.split) as data:
        probs = predict_patch_set(model, data, control=cli_control(args.json))
        ids = list(data.ids)
    rows = [(pid, f"{float(p):.6f}") for pid, p in zip(ids, probs, strict=True)]
    atomic_write_text(args.out, csv_text(["id", "label"], rows))  # the one CSV writer: ids never formulas
    if args.json:
        print(strict_dumps({"out": str(args.out), "patches": len(ids),
                          "model": model.info.to_dict()}, indent=2))
        return 0
    for line in _warn_lines(model.info):
        print(line)
    print(f"wrote {args.out}: {len(ids)} patches")
    return 0


def run_add_domain(args: argparse.Namespace) -> int:
    from histoviewer.core.domain_training import add_domain_profile
    from histoviewer.core.models.model_file import load_model, save_model
    from histoviewer.core.patches.open import detect_layout, open_patch_set

    model = load_model(args.model, device="cpu")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else print
    sets = []
    try:
        for path in args.data:
            layout = detect_layout(path) if args.layout == "auto" else args.layout
            split = "train" if layout in ("pcam", "kaggle") else None
            sets.append(open_patch_set(path, model.input, layout=layout, split=split))
        profile = add_domain_profile(model, sets, seed=args.seed, valid_fraction=args.valid_fraction, log=log)
    finally:
        for ps in sets:
            ps.close()
    out = args.out or args.model
    info = save_model(out, model)
    if args.json:
        print(strict_dumps({"model": str(out), "content_hash": info.content_hash, "domain": profile.to_json()},
                         indent=2))
    else:
        print(f"wrote {out}  (sha256 {info.content_hash[:16]}...): domain profile of {profile.dim} features, "
              f"patch threshold {profile.patch_threshold:.2f}")
    return 0


def _evaluation_text(ev: dict[str, Any]) -> str:
    """One recorded evaluation (``eval-patches --record``) in a line."""
    def pct(key: str) -> str | None:
        v = ev.get(key)
        return None if v is None else f"{key} {100 * v:.1f} %"

    parts = [f"{ev.get('n', '?')} patches"]
    if ev.get("auc") is not None:
        parts.append(f"AUC {ev['auc']:.3f}")
    parts += [t for t in (pct("sensitivity"), pct("specificity")) if t]
    if ev.get("ece") is not None:
        parts.append(f"ECE {ev['ece']:.3f}")
    return ", ".join(parts)


def run_restamp(files: list[Path], as_json: bool) -> int:
    from histoviewer.core.models.model_file import restamp_model

    done = []
    for path in files:
        info = restamp_model(path)
        done.append({"model": str(path), "content_hash": info.content_hash,
                     "demonstration": info.demonstration, "caution": info.caution})
        if not as_json:
            print(f"re-stamped {path}  (sha256 {info.content_hash[:16]}...)\n"
                  f"  {info.display_name()}\n  {info.caution}")
    if as_json:
        print(strict_dumps(done, indent=2))
    return 0


def run_models(args: argparse.Namespace) -> int:
    from histoviewer.cli.hints import demo_warning
    from histoviewer.core.models.registry import available_models
    from histoviewer.core.paths import user_models_dir

    if args.restamp:
        return run_restamp(args.restamp, args.json)
    found = available_models()
    if args.json:
        print(strict_dumps({
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
        if not a.info.demonstration:
            print(f"      {a.info.caution}")
        if a.info.operating_point is not None:
            print(f"      operating point: {a.info.operating_point.describe()}")
        for name, ev in (a.info.extra.get("evaluations") or {}).items():
            print(f"      held out, {name}: {_evaluation_text(ev)}")
        print(f"      {a.path}  sha256 {a.info.content_hash[:16]}...")
    demos = [a.key for a in found if a.info and a.info.demonstration]
    if demos:
        print(f"\nWARNING: {', '.join(demos)}: {demo_warning()}")
    return 0
