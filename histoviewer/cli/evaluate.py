"""``histoviewer evaluate froc|kappa``: the metrics the CAMELYON challenges report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from histoviewer.core.strict_json import strict_dumps

__all__ = ["register", "run_froc", "run_kappa"]


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="CAMELYON16 FROC / slide AUC, CAMELYON17 kappa",
                       description="Evaluate detections or stages against ground truth.")
    ev = p.add_subparsers(dest="metric", metavar="METRIC", required=True)
    f = ev.add_parser(
        "froc", help="CAMELYON16 lesion FROC and slide-level AUC",
        description="Lesion-level FROC (mean sensitivity at 1/4, 1/2, 1, 2, 4, 8 false positives per "
                    "slide) and slide-level AUC. Truth: per slide <stem>.xml (ASAP/CAMELYON), "
                    "<stem>.geojson or <stem>.json in --truth; a slide without one is negative. "
                    "Lesions are dilated by --dilation-um; those with a major axis under --itc-um "
                    "after that are ITCs, not required (hits on them are neither TP nor FP). "
                    "Detections: analyze's output folder (<stem>/summary.json: lesion centroids "
                    "with their maximum probability) or <stem>.csv files of probability,x,y "
                    "(level-0 px). Every evaluated slide must appear in --detections. "
                    "--froc-variant official (the default) is the number the CAMELYON16 evaluation "
                    "script gives: level-5 mask, every slide at 0.243 um/px, lowest threshold "
                    "dropped, interpolated sensitivities; exact-geometry measures each slide at its "
                    "own scale on a 4 um raster (not comparable with published CAMELYON16 scores).")
    f.add_argument("--truth", type=Path, required=True, metavar="DIR")
    f.add_argument("--detections", type=Path, required=True, metavar="DIR")
    f.add_argument("--mpp", type=float, default=None,
                   help="um per level-0 px for CSV detections (analyze summaries carry their own)")
    f.add_argument("--froc-variant", choices=("official", "exact-geometry"), default="official",
                   help="official: the CAMELYON16 script's computation (default); exact-geometry: "
                        "each slide's own scale on a fine raster")
    f.add_argument("--dilation-um", type=float, default=None,
                   help="exact-geometry only: how much every lesion's diameter grows (default 75 um, "
                        "as CAMELYON16: points within 37.5 um of tumour join it)")
    f.add_argument("--itc-um", type=float, default=None,
                   help="exact-geometry only: ITC major-axis limit (default 275)")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=run_froc)
    k = ev.add_parser(
        "kappa", help="CAMELYON17 quadratic-weighted kappa of pN stages",
        description="Quadratic-weighted Cohen's kappa between the patient stages (patient_<p>.zip,<pN> "
                    "rows) of a reference and a submission in the CAMELYON17 CSV format, on the "
                    "scale pN0 < pN0(i+) < pN1mi < pN1 < pN2.")
    k.add_argument("reference", type=Path, metavar="REFERENCE.csv")
    k.add_argument("submission", type=Path, metavar="SUBMISSION.csv")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=run_kappa)


def run_froc(args: argparse.Namespace) -> int:
    from histoviewer.core.analysis.detections import read_detections
    from histoviewer.core.analysis.froc import (
        DILATION_UM,
        ITC_MAJOR_AXIS_UM,
        evaluate_slide,
        froc,
    )
    from histoviewer.core.analysis.froc_official import (
        evaluate_slide_official,
        froc_official,
    )
    from histoviewer.core.analysis.truth import Truth, find_truth_file, read_truth
    from histoviewer.core.errors import EvaluationError

    if not args.truth.is_dir():
        raise EvaluationError(f"{args.truth}: not a folder of ground-truth files")
    official = args.froc_variant == "official"
    if official and (args.dilation_um is not None or args.itc_um is not None):
        raise EvaluationError("--dilation-um and --itc-um change the rule: they apply to "
                              "--froc-variant exact-geometry only (the official rule is fixed)")
    slides, warnings = [], []
    for d in read_detections(args.detections, None if official else args.mpp):
        path = find_truth_file(args.truth, d.slide)
        truth = read_truth(path) if path is not None else Truth(())
        warnings.extend(truth.warnings)
        if official:
            slides.append(evaluate_slide_official(d.slide, truth, d.detections, slide_score=d.slide_score))
        else:
            slides.append(evaluate_slide(
                d.slide, truth, d.detections, d.mpp,
                dilation_um=DILATION_UM if args.dilation_um is None else args.dilation_um,
                itc_um=ITC_MAJOR_AXIS_UM if args.itc_um is None else args.itc_um, slide_score=d.slide_score))
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    result = froc_official(slides) if official else froc(slides)
    if args.json:
        out = result.to_dict()
        out["truth_warnings"] = warnings
        print(strict_dumps(out, indent=2))
        return 0
    name = "CAMELYON16 FROC" if official else "FROC (exact-geometry variant, not the CAMELYON16 official number)"
    print(f"{name} {result.score:.4f} over {result.slides} slides, {result.lesions} lesions to detect "
          f"(+{result.itc_lesions} ITC-sized, not required; {result.itc_detected} of them hit)")
    print("  sensitivity at FPs/slide: " + ", ".join(f"{k:g}: {v:.3f}" for k, v in result.sensitivity_at.items()))
    auc = "undefined (all slides of one class)" if result.slide_auc is None else f"{result.slide_auc:.4f}"
    print(f"  slide-level AUC: {auc}")
    print(f"  rule: {result.rule}")
    return 0


def run_kappa(args: argparse.Namespace) -> int:
    from histoviewer.core.analysis.camelyon17 import read_patient_stages
    from histoviewer.core.analysis.kappa import stage_kappa

    result = stage_kappa(read_patient_stages(args.reference), read_patient_stages(args.submission))
    if args.json:
        print(strict_dumps(result.to_dict(), indent=2))
        return 0
    kappa = "undefined (one stage for every patient in both)" if result.kappa is None else f"{result.kappa:.4f}"
    print(f"quadratic-weighted kappa {kappa} over {result.patients} patients, "
          f"exact agreement {result.exact_agreement:.3f}")
    for p, r, s in result.disagreements:
        print(f"  {p}: reference {r}, submitted {s}")
    return 0
