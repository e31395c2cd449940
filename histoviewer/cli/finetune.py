"""``histoviewer train cnn|handcrafted --init MODEL --data SLIDE... --layout slides``: fine-tune
a model from the pathologist's corrections on those slides (review decisions, tumour/normal
annotations), see ``core.training.finetune``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from histoviewer.core.errors import PatchDataError
from histoviewer.core.strict_json import strict_dumps

__all__ = ["FINETUNE_DEFAULTS", "is_finetune", "run_finetune"]

# The train options whose defaults differ for a fine-tune (None in the parser = not given).
FINETUNE_DEFAULTS = {"epochs": 8, "lr": 1e-3, "batch_size": 32, "patience": 4}


def _names_a_model(spec: Path) -> bool:
    """True when ``--init`` names a model (a built-in key, or a model file with our header)
    rather than a weights file from import-weights."""
    from histoviewer.core.errors import HistoViewerError
    from histoviewer.core.models.model_file import read_model_info
    from histoviewer.core.models.registry import DEFAULT_MODEL_NAMES, resolve_model_path

    if str(spec) in DEFAULT_MODEL_NAMES:
        return True
    try:
        read_model_info(resolve_model_path(spec))
    except HistoViewerError:
        return False
    return True


def is_finetune(args: argparse.Namespace) -> bool:
    """``train --init MODEL --layout slides``: a fine-tune from corrections."""
    return args.init is not None and args.layout == "slides" and _names_a_model(args.init)


def _slides_of(paths: list[Path]) -> list[Path]:
    from histoviewer.core.patches.slide_patches import list_slides

    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = list_slides(path)
            if not found:
                raise PatchDataError(f"{path}: no slide files in this folder")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise PatchDataError(f"{path}: no such file or directory")
    return out


def run_finetune(args: argparse.Namespace) -> int:
    from histoviewer.cli.model_args import warn_lines
    from histoviewer.cli.progress import cli_control, close_bars
    from histoviewer.core.models.model_file import read_model_info
    from histoviewer.core.models.registry import resolve_model_path
    from histoviewer.core.patches.region_patches import slide_labels
    from histoviewer.core.training.finetune import FinetuneSettings, finetune_model

    slides = _slides_of(list(args.data))
    if args.annotations is not None and len(slides) != 1:
        raise PatchDataError(f"{args.annotations}: an annotation file belongs to one slide, got {len(slides)} slides",
                             setting="annotations")
    labelled = [slide_labels(s, args.annotations) for s in slides]  # refuses a slide without labels, naming it
    parent_kind = read_model_info(resolve_model_path(args.init)).kind
    if parent_kind != args.kind:
        raise PatchDataError(f"{args.init} is a {parent_kind} model: fine-tune it with 'train {parent_kind}'")
    pick = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in FINETUNE_DEFAULTS.items()}
    settings = FinetuneSettings(epochs=pick["epochs"], learning_rate=pick["lr"], batch_size=pick["batch_size"],
                                patience=pick["patience"], seed=args.seed, device=args.device, name=args.name,
                                augment=not args.no_augment,
                                max_patches_per_class=args.max_patches_per_slide or 1500)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else print
    for sl in labelled:
        log(f"{sl.slide.name}: {sl.n_tumour} tumour and {sl.n_normal} normal region(s) from {sl.source}")
    control = cli_control(args.json)
    try:
        outcome = finetune_model(str(args.init), labelled, settings, out=args.out, overwrite=args.overwrite,
                                 control=control, log=log)
    finally:
        close_bars(control)
    info, rec = outcome.classifier.info, outcome.record
    if args.json:
        print(strict_dumps({"model": str(outcome.path), "name": info.name, "kind": info.kind,
                            "content_hash": info.content_hash, "fine_tune": rec,
                            "epochs_run": len(outcome.train.history), "best_epoch": outcome.train.best_epoch,
                            "seconds": round(outcome.train.seconds, 1), "caveat": info.caveat}, indent=2))
        return 0
    v = rec["validation"]
    auc = "n/a" if v["auc"] is None else f"{v['auc']:.3f}"
    print(f"\nwrote {outcome.path}  (sha256 {info.content_hash[:16]}...)")
    for line in warn_lines(info):
        print(line)
    print(f"fine-tuned from {rec['parent']['name']} (sha256 {rec['parent']['content_hash'][:16]}...) on "
          f"{rec['patches']['train']} patches from {len(labelled)} slide(s), {rec['n_review_decisions']} review "
          f"decision(s) and {rec['n_annotations']} annotation(s), {outcome.train.seconds:.0f} s")
    print(f"validation (held out by region, {v['n']} patches: {v['tumour']} tumour, {v['normal']} normal): "
          f"AUC {auc}, sensitivity {100 * (v['sensitivity'] or 0):.1f} %, "
          f"specificity {100 * (v['specificity'] or 0):.1f} % at threshold {v['threshold']:.2f}")
    print(f"use it with: --model {outcome.path}")
    return 0
