"""Helpers shared by the model commands (``train``, ``eval-patches``, ``predict-patches``,
``import-weights``, ``add-domain``, the fine-tune and explain paths): the patch-data options
and how they are opened, output checks, and the lines that print what a model says of itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from histoviewer.core.errors import PatchDataError

__all__ = [
    "CNN_ARCHITECTURES",
    "add_data_args",
    "check_out",
    "metrics_text",
    "open_data",
    "warn_lines",
]

# Spelled out, not read from cnn_arch: that imports torch, seconds of start-up for --help.
CNN_ARCHITECTURES = ("compact-cnn", "strided-cnn", "resnet", "resnet50", "screen-cnn")


def add_data_args(p: argparse.ArgumentParser, *, default_split: str | None, multi_data: bool = False) -> None:
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


def warn_lines(info: Any) -> list[str]:
    from histoviewer.cli.hints import caution_line

    lines = [f"model: {info.display_name()}"]
    if info.demonstration:
        lines.append(f"WARNING: {caution_line(info.caution, True)}")
    else:
        lines.append(f"  {info.caution}")
    if info.operating_point is not None:
        lines.append(f"  operating point: {info.operating_point.describe()}")
    return lines


def open_data(args: argparse.Namespace, path: Path, spec: Any, split: str | None,
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


def check_out(args: argparse.Namespace, *outs: Path | None, overwrite: bool) -> None:
    """Before any work: no output over a file the command reads (data, annotations, the
    model, initial weights), nor over an existing file unless ``overwrite``."""
    from histoviewer.core.atomic import check_output

    data = getattr(args, "data", None)
    inputs = [*(data if isinstance(data, list) else [data]), *(getattr(args, name, None) for name in (
        "valid_data", "annotations", "init", "pth", "model"))]
    for out in outs:
        if out is not None:
            check_output(out, inputs=[p for p in inputs if p is not None], overwrite=overwrite)


def metrics_text(m: Any) -> str:
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
