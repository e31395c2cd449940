"""``eval-patches --top-losses N --gallery DIR``: the most confident mistakes, listed and drawn."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_GALLERY_LOSSES",
    "check_gallery",
    "eval_top_losses",
    "print_top_losses",
]

DEFAULT_GALLERY_LOSSES = 12


def check_gallery(args: argparse.Namespace) -> None:
    """Before any work: the gallery folder is neither an input nor (without --overwrite) an
    existing folder."""
    from histoviewer.core.atomic import check_output
    from histoviewer.core.errors import OverwriteRefused

    inputs = [
        p
        for p in (args.data, args.annotations, args.roc, args.calibration)
        if p is not None
    ]
    check_output(args.gallery, inputs=inputs, overwrite=args.overwrite, folder=True)
    if args.gallery.exists() and not args.overwrite:
        raise OverwriteRefused(
            f"{args.gallery} already exists; nothing was written. Choose another "
            "folder or allow replacing it",
            setting="overwrite",
        )


def eval_top_losses(
    args: argparse.Namespace,
    model: Any,
    indices: np.ndarray,
    labels: np.ndarray,
    probs: np.ndarray,
    metrics: Any,
    curve: Any,
    calibration: Any,
    title: str,
    subtitle: str,
) -> dict[str, Any]:
    """The top losses at the evaluation's threshold (and the gallery when asked), as JSON."""
    from histoviewer.cli.model_args import open_data
    from histoviewer.core.errors import PatchDataError
    from histoviewer.core.explain.gallery import top_losses, write_gallery

    n = args.top_losses if args.top_losses is not None else DEFAULT_GALLERY_LOSSES
    losses = top_losses(labels, probs, metrics.threshold, n)
    with open_data(
        args, args.data, model.input, args.split
    ) as data:  # the same patches, read again
        ids = data.ids
        if len(data) <= int(np.max(indices, initial=0)):
            raise PatchDataError(
                f"{args.data}: the patches changed while they were evaluated"
            )
        gallery = None
        if args.gallery is not None:
            write_gallery(
                args.gallery,
                model,
                data,
                indices,
                labels,
                probs,
                losses,
                metrics=metrics,
                curve=curve,
                calibration=calibration,
                title=title,
                subtitle=subtitle,
                replace=args.overwrite,
            )
            gallery = str(args.gallery / "index.html")

        def rows(positions: tuple[int, ...]) -> list[dict[str, Any]]:
            return [
                {
                    "rank": r,
                    "id": str(ids[int(indices[p])]),
                    "label": int(labels[p]),
                    "probability": float(probs[p]),
                }
                for r, p in enumerate(positions, start=1)
            ]

        return {
            "threshold": losses.threshold,
            "false_positives": rows(losses.false_positives),
            "false_negatives": rows(losses.false_negatives),
            "n_false_positives": losses.n_fp,
            "n_false_negatives": losses.n_fn,
            "gallery": gallery,
        }


def print_top_losses(losses: dict[str, Any]) -> None:
    for key, kind in (
        ("false_positives", "false positives"),
        ("false_negatives", "false negatives"),
    ):
        shown, total = losses[key], losses["n_" + key]
        print(
            f"most confident {kind} ({len(shown)} of {total}, threshold {losses['threshold']:g}):"
        )
        for row in shown:
            print(
                f"  {row['rank']:3d}. {row['id']}  label {'tumour' if row['label'] else 'normal'}  "
                f"P {row['probability']:.3f}"
            )
    if losses["gallery"]:
        print(f"gallery: {losses['gallery']}")
