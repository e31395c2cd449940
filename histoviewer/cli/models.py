"""``histoviewer eval-patches``, ``predict-patches``, ``add-domain``, ``import-weights`` and
``models`` (``train`` is ``cli/train.py``).

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
from histoviewer.cli.model_args import (
    CNN_ARCHITECTURES,
    add_data_args,
    check_out,
    metrics_text,
    open_data,
    warn_lines,
)
from histoviewer.core.errors import PatchDataError
from histoviewer.core.strict_json import strict_dumps

__all__ = ["register"]

EVAL_EPILOG = (
    "--part train/valid/test re-cuts --data with the split rule recorded in the model (it must be\n"
    "a source the model was trained on) and checks the test part against the recorded hash.\n"
    "ECE: expected calibration error of the tumour probability, 15 equal-width bins over [0, 1].\n"
    "Brier: mean squared difference between probability and label."
)


def register(sub) -> None:
    e = sub.add_parser("eval-patches", help="evaluate a model on labelled patches",
                       epilog=EVAL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("--model", required=True, help="cnn, handcrafted, cnn-resnet or a model file")
    add_data_args(e, default_split="test")
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
    add_data_args(pr, default_split="test")
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


def run_import_weights(args: argparse.Namespace) -> int:
    check_out(args, args.out, overwrite=args.overwrite)
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


def run_eval(args: argparse.Namespace) -> int:
    check_out(args, args.roc, args.calibration, overwrite=True)  # pictures: replaced, never over an input
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
    with open_data(args, args.data, model.input, args.split) as data:
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
    for line in warn_lines(model.info):
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
    print(metrics_text(m))
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
    check_out(args, args.out, overwrite=args.overwrite)
    from histoviewer.cli.progress import cli_control
    from histoviewer.core.atomic import atomic_write_text
    from histoviewer.core.csv_table import csv_text
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.training import predict_patch_set

    model = open_model(args.model, device=args.device)
    with open_data(args, args.data, model.input, args.split) as data:
        probs = predict_patch_set(model, data, control=cli_control(args.json))
        ids = list(data.ids)
    rows = [(pid, f"{float(p):.6f}") for pid, p in zip(ids, probs, strict=True)]
    atomic_write_text(args.out, csv_text(["id", "label"], rows))  # the one CSV writer: ids never formulas
    if args.json:
        print(strict_dumps({"out": str(args.out), "patches": len(ids),
                          "model": model.info.to_dict()}, indent=2))
        return 0
    for line in warn_lines(model.info):
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
    screen, screen_settings = _shipped_screen()
    forest, forest_problem = _shipped_node_classifier()
    if args.json:
        print(strict_dumps({
            "models_folder": str(user_models_dir()),
            "models": [{"key": a.key, "path": str(a.path), "problem": a.problem or None,
                        "info": a.info.to_dict() if a.info else None} for a in found],
            "screening_model": {"key": screen.key, "path": str(screen.path), "problem": screen.problem or None,
                                "info": screen.info.to_dict() if screen.info else None,
                                "settings": screen_settings.to_dict() if screen_settings else None},
            "node_classifier": {"problem": forest_problem or None, **(forest or {})},
            "demonstration_warning": demo_warning(),
        }, indent=2))
        return 0
    print(f"models folder (drop .safetensors model files here): {user_models_dir()}")
    for a in found:
        if a.info is None:
            print(f"  {a.key}: unusable: {a.problem}")
            continue
        _print_model(a)
    print("\nscreening model (analyze --strategy screened; the viewer's idle pass):")
    if screen.info is None:
        print(f"  {screen.key}: unusable: {screen.problem}")
    else:
        _print_model(screen)
        if screen_settings is not None:
            print(f"      screens at {screen_settings.describe()}")
    print("\nnode classifier (the learned node label beside the rule-based one; analyze --node-classifier):")
    if forest is None:
        print(f"  default: unusable: {forest_problem}")
    else:
        oob = forest["oob_accuracy"]
        print(f"  default: {forest['name']}, {forest['kind']}, {forest['trees']} trees over "
              f"{forest['features']} map features")
        print(f"      {forest['caution']}")
        print(f"      trained on {forest['trained_on']}"
              + (f"; out-of-bag accuracy {100 * float(oob):.1f} %" if oob is not None else ""))
        print(f"      {forest['path']}  sha256 {forest['content_hash'][:16]}... "
              f"(trees {forest['arrays_digest'][:16]}...)")
    demos = [a.key for a in found if a.info and a.info.demonstration]
    if demos:
        print(f"\nWARNING: {', '.join(demos)}: {demo_warning()}")
    return 0


def _print_model(a: Any) -> None:
    """One usable model of the listing: name, caution, operating point, held-out results, file."""
    auc = a.info.valid_auc
    auc_text = f", validation AUC {auc:.3f}" if auc is not None else ""
    print(f"  {a.key}: {a.info.display_name()}{auc_text}")
    if not a.info.demonstration:
        print(f"      {a.info.caution}")
    if a.info.operating_point is not None:
        print(f"      operating point: {a.info.operating_point.describe()}")
    for name, ev in (a.info.extra.get("evaluations") or {}).items():
        print(f"      held out, {name}: {_evaluation_text(ev)}")
    print(f"      runs on {_engine_text(a.info)}")
    print(f"      {a.path}  sha256 {a.info.content_hash[:16]}...")


def _engine_text(info: Any) -> str:
    """What would run the model with the automatic device: "onnxruntime (a chain CNN on the CPU)"."""
    from histoviewer.core.models.model_engine import engine_description

    return engine_description(info)


def _shipped_screen() -> tuple[Any, Any]:
    """(AvailableModel of the shipped screening model, its ScreenSettings or None)."""
    from histoviewer.core.errors import ModelLoadError
    from histoviewer.core.models.model_file import read_model_info
    from histoviewer.core.models.registry import AvailableModel
    from histoviewer.core.models.screen_model import (
        DEFAULT_SCREEN_FILE,
        DEFAULT_SCREEN_NAME,
        resolve_screen_model_path,
        screen_settings,
    )
    from histoviewer.core.paths import bundled_resources_dir

    path = bundled_resources_dir() / "models" / DEFAULT_SCREEN_FILE
    try:
        path = resolve_screen_model_path(DEFAULT_SCREEN_NAME)
        info = read_model_info(path)
        return AvailableModel(DEFAULT_SCREEN_NAME, path, info), screen_settings(info, path)
    except ModelLoadError as exc:
        return AvailableModel(DEFAULT_SCREEN_NAME, path, None, str(exc)), None


def _shipped_node_classifier() -> tuple[dict[str, Any] | None, str]:
    """(the shipped node classifier's card, or None and why it cannot be used)."""
    from histoviewer.core.analysis.learned_label import resolve_node_classifier
    from histoviewer.core.errors import ModelLoadError

    try:
        clf = resolve_node_classifier("default")
    except ModelLoadError as exc:
        return None, str(exc)
    return (None, "no classifier") if clf is None else (clf.card(), "")
