"""``histoviewer compare SLIDE --model A --model B --out DIR``: two models on one slide.

The work is ``core.jobs.compare.compare_models``: both analyses, the difference map (A minus
B) as TIFF and PNG, the lesions each model finds and where they disagree as PNG and JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from histoviewer.core.strict_json import strict_dumps

__all__ = ["register", "run_compare"]


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="compare two models on a slide: difference map and lesions each finds",
        description="Analyse SLIDE with model A and model B and write into DIR: difference.tiff "
        "and difference.png (A minus B per map cell, diverging colours with a legend), "
        "lesions.png (outlines by who found them: both, A only, B only), "
        "comparison.json (both node labels, the difference's statistics, every finding "
        "with sizes and classes) and a/, b/ (each model's full analysis, as analyze "
        "writes it). DIR appears complete or not at all.",
    )
    p.add_argument("slide", type=Path, metavar="SLIDE")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="MODEL",
        help="give it twice: model A, then model B (cnn, handcrafted, cnn-resnet or a model file)",
    )
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output folder"
    )
    p.add_argument(
        "--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, mps"
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="T",
        help="one lesion threshold for both models (default: each model's own operating point)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace DIR when it exists (default: refuse)",
    )
    p.add_argument(
        "--json", action="store_true", help="print comparison.json instead of a summary"
    )
    p.set_defaults(func=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from histoviewer.cli.hints import caution_line
    from histoviewer.cli.progress import cli_control, close_bars
    from histoviewer.core.analysis.lesion_match import (
        FOUND_BY_A,
        FOUND_BY_B,
        FOUND_BY_BOTH,
    )
    from histoviewer.core.analysis.lesions import LesionParams
    from histoviewer.core.errors import InferenceError
    from histoviewer.core.inference.analyze import AnalyzeOptions
    from histoviewer.core.jobs.compare import compare_models, stated_label
    from histoviewer.core.models.registry import open_model

    if len(args.model) != 2:
        raise InferenceError(
            f"--model must be given twice (model A, then model B), got {len(args.model)}"
        )
    if args.threshold is not None:
        try:
            LesionParams(threshold=args.threshold)
        except ValueError as exc:
            raise InferenceError(f"--threshold: {exc}") from None
    model_a = open_model(args.model[0], device=args.device)
    try:
        model_b = open_model(args.model[1], device=args.device)
        control = cli_control(args.json)
        try:
            result = compare_models(
                args.slide,
                args.out,
                model_a,
                model_b,
                AnalyzeOptions(device=args.device, lesion_threshold=args.threshold),
                control=control,
                overwrite=args.overwrite,
            )
        finally:
            close_bars(control)
            model_b.close()
    finally:
        model_a.close()
    if args.json:
        print(strict_dumps(result.to_dict(), indent=2))
        return 0
    for key, s in (("A", result.a), ("B", result.b)):
        print(
            f"{key}: {s.model.name}: node label {stated_label(s)}, {len(s.lesions)} lesion(s); "
            f"{caution_line(s.model.caution, s.model.demonstration)}"
        )
    d = result.difference
    print(
        f"difference A - B on {d.cells} cells: mean |A-B| {d.mean_abs:.3f}, A higher by up to "
        f"{d.max_a_over_b:.3f}, B higher by up to {d.max_b_over_a:.3f}, {d.cells_apart} cells apart by >= 0.5"
    )
    print(
        f"lesions: {result.count(FOUND_BY_BOTH)} found by both, {result.count(FOUND_BY_A)} by A only, "
        f"{result.count(FOUND_BY_B)} by B only"
    )
    for f in result.findings:
        if f.found_by == FOUND_BY_BOTH and not f.classes_differ:
            continue
        side = f.a if f.found_by != FOUND_BY_B else f.b
        what = {
            FOUND_BY_A: "A only",
            FOUND_BY_B: "B only",
            FOUND_BY_BOTH: "both, classes differ",
        }[f.found_by]
        sizes = ", ".join(
            f"{les.diameter_mm:.3f} mm {les.size_class.value}"
            if les.diameter_mm is not None
            else les.size_class.value
            for les in side
        )
        extra = (
            f" (A {f.size_class_a.value}, B {f.size_class_b.value})"
            if f.classes_differ and f.size_class_a and f.size_class_b
            else ""
        )
        x, y = f.l0_centroid
        print(f"  {what}: {sizes}{extra} at ({x:.0f}, {y:.0f}) level-0 px")
    print(
        "the two models agree"
        if result.agree
        else "the two models DISAGREE (see above)"
    )
    print(f"written: {result.out_dir}")
    return 0
