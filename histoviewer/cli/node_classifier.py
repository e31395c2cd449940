"""``histoviewer train-node-classifier``: fit the learned node classifier (a random forest
over a probability map's features) on analysed slides with known labels and/or synthesised
phantom nodes; save it as a safe file (arrays, no pickle)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "run_train_node_classifier"]

PHANTOM_CAUTION = (
    "trained on phantoms only (synthesised maps of phantom nodes, not real tissue)"
)


def register(sub) -> None:
    p = sub.add_parser(
        "train-node-classifier",
        help="train the learned node classifier (random forest over map features)",
        description="Fit a random forest that labels a node (negative, itc, micro, macro) from the "
        "features of its probability map (largest lesion diameter and area, lesion count, "
        "tumour area fraction, probability histogram, ...: histoviewer/core/analysis/"
        "node_features.py). Training nodes: analysed slides (analyze output folders) "
        "labelled by a CAMELYON17 CSV (--labels) or by the phantom ground truth beside "
        "each slide, and/or synthesised phantom nodes (--phantom-patients). The forest is "
        "saved as arrays in a .safetensors file (no pickle) naming its features, classes "
        "and training data; analyze and the viewer show its label beside the rule-based one.",
    )
    p.add_argument(
        "analyses",
        nargs="*",
        type=Path,
        metavar="DIR",
        help="analysis folders, or analyze output folders holding them",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="CSV",
        help="CAMELYON17 node labels (patient_<p>_node_<n>.tif,<label>) for the analysed "
        "slides (default: the phantom ground truth <slide>.lesions.json beside each)",
    )
    p.add_argument(
        "--phantom-patients",
        type=int,
        default=0,
        metavar="N",
        help="add N synthesised phantom patients (3-5 nodes each; see "
        "histoviewer/core/phantom/node_cohort.py)",
    )
    p.add_argument(
        "--phantom-seed",
        type=int,
        default=1,
        metavar="S",
        help="seed of the phantom patients",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="lesion threshold for the phantom maps (default: the default CNN's operating point)",
    )
    p.add_argument(
        "--trees",
        type=int,
        default=200,
        metavar="N",
        help="trees in the forest (default 200)",
    )
    p.add_argument("--seed", type=int, default=0, help="the forest's random seed")
    p.add_argument(
        "--name", default=None, help="the classifier's name (default: the file's stem)"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="FILE",
        help="the .safetensors file to write",
    )
    p.set_defaults(func=run_train_node_classifier)


def _default_threshold() -> float:
    from histoviewer.core.analysis.lesions import DEFAULT_THRESHOLD
    from histoviewer.core.models.model_file import read_model_info
    from histoviewer.core.models.registry import resolve_model_path

    op = read_model_info(resolve_model_path("cnn")).operating_point
    return DEFAULT_THRESHOLD if op is None else float(op.threshold)


def run_train_node_classifier(args: argparse.Namespace) -> int:
    from histoviewer.core.errors import ModelError
    from histoviewer.core.models.node_forest import save_forest
    from histoviewer.core.phantom.node_cohort import phantom_cohort
    from histoviewer.core.training.node_classifier import (
        examples_from_analyses,
        find_analyses,
        fit_node_forest,
    )

    if not args.analyses and args.phantom_patients <= 0:
        raise ModelError(
            "nothing to train on: give analysis folders and/or --phantom-patients N"
        )
    if args.trees < 1 or args.trees > 2000:
        raise ModelError("--trees must be 1..2000")
    examples, trained_on, real = [], {}, False
    if args.analyses:
        folders = find_analyses(args.analyses)
        found = examples_from_analyses(
            folders, args.labels, skipped=lambda m: print(f"note: {m}", file=sys.stderr)
        )
        examples += found
        real = args.labels is not None
        trained_on["analyses"] = {
            "folders": [str(p) for p in args.analyses],
            "nodes": len(found),
            "labels": str(args.labels) if args.labels else "phantom ground truth",
        }
        print(f"{len(found)} labelled nodes from {len(folders)} analysis folder(s)")
    if args.phantom_patients > 0:
        threshold = (
            args.threshold if args.threshold is not None else _default_threshold()
        )
        cohort = phantom_cohort(args.phantom_patients, args.phantom_seed, threshold)
        examples += [c.example for c in cohort]
        trained_on["phantoms"] = {
            "patients": args.phantom_patients,
            "seed": args.phantom_seed,
            "nodes": len(cohort),
            "noisy_maps": sum(c.noisy for c in cohort),
            "near_border_nodes": sum(c.near_border for c in cohort),
            "lesion_threshold": threshold,
            "maps": "synthesised from phantom layouts (histoviewer/core/phantom/node_maps.py), no CNN",
        }
        print(
            f"{len(cohort)} synthesised phantom nodes of {args.phantom_patients} patients"
        )
    caution = (
        "trained on analysed slides labelled by a label file (real data)"
        if real and not args.phantom_patients
        else PHANTOM_CAUTION
        if not real
        else "trained on real analysed slides and synthesised phantom maps"
    )
    name = args.name or args.out.with_suffix("").name
    forest, oob = fit_node_forest(
        examples,
        trees=args.trees,
        seed=args.seed,
        name=name,
        caution=caution,
        trained_on=trained_on,
    )
    saved = save_forest(args.out, forest)
    per_class = ", ".join(
        f"{k} {v}" for k, v in saved.description["trained_on"]["per_class"].items()
    )
    print(
        f"trained on {len(examples)} nodes ({per_class}); out-of-bag accuracy "
        + ("n/a" if oob is None else f"{oob:.3f}")
    )
    print(
        f"wrote {args.out} ({saved.trees} trees, content hash {saved.content_hash[:12]}): {caution}"
    )
    return 0
