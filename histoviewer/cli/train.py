"""``histoviewer train``: train a patch classifier (cnn, handcrafted) or a low-magnification
screening model (screen); with ``--layout slides`` and a model as ``--init``, fine-tune it
(``cli/finetune.py``). Prints what the written model says of itself (``ModelInfo.caution``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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

__all__ = ["register", "run_train"]

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
    add_data_args(t, default_split="train", multi_data=True)
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


def run_train(args: argparse.Namespace) -> int:
    check_out(args, args.out, overwrite=args.overwrite)
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
            parts.append(open_data(args, path, spec, args.split, one_of_several=several))
    except BaseException:
        for p in parts:
            p.close()
        raise
    with ConcatPatchSet(parts) if several else parts[0] as data:
        valid = None
        if args.valid_data is not None:
            valid = open_data(args, args.valid_data, spec, "valid")
        elif not several and data.layout == "pcam" and paths[0].is_dir() and args.split in (None, "train"):
            try:
                valid = open_data(args, paths[0], spec, "valid")
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
    for line in warn_lines(info):
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
    print(metrics_text(m))
    return 0
