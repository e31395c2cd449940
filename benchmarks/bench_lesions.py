"""Lesions, size classes, node labels and pN on phantom cases analysed by the default CNN.

    python benchmarks/bench_lesions.py [--work /tmp/bench_lesions] [--keep] [--device cpu]

Writes phantom nodes of seven patients (lesions of known size away from and near the class
borders, ITCs, negative nodes) under ``--work`` (never the repository), analyses them with
``analyze_slide`` and the default CNN, and prints against the phantom ground truth:

- CAMELYON16 FROC and slide AUC (detections = lesion centroids with their max probability);
- per ground-truth lesion: detected or not, measured vs true diameter, size class right or
  not, both with the label-window correction (what ``analyze`` reports) and without it (the
  raw thresholded outline: the baseline, measured on the same maps in the same run);
- node label accuracy and pN quadratic kappa, split into nodes/patients whose deciding
  lesions lie away from the class borders and those near them;
- the ITC detection rate (a hit inside the ITC's 37.5 um-dilated region).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

# (patient, node, lesions, width px, height px) at MPP; "near" marks lesions within one map
# cell (~0.09 mm) of a class border (0.2 or 2.0 mm), where the map's resolution decides.
MPP = 0.5
CASES = [
    ("patient_000", 0, "", 8000, 8000), ("patient_000", 1, "", 8000, 8000), ("patient_000", 2, "", 8000, 8000),
    ("patient_001", 0, "itc:0.1", 8000, 8000), ("patient_001", 1, "", 8000, 8000),
    ("patient_001", 2, "itc:0.12", 8000, 8000),
    ("patient_002", 0, "micro:0.8", 8000, 8000), ("patient_002", 1, "", 8000, 8000),
    ("patient_002", 2, "itc:0.1", 8000, 8000),
    ("patient_003", 0, "macro:3.0,itc:0.1", 16000, 12000), ("patient_003", 1, "micro:0.6", 8000, 8000),
    ("patient_003", 2, "", 8000, 8000),
    ("patient_004", 0, "macro:2.8", 16000, 12000), ("patient_004", 1, "micro:1.0", 8000, 8000),
    ("patient_004", 2, "micro:0.5", 8000, 8000), ("patient_004", 3, "micro:1.2,itc:0.1", 10000, 8000),
    ("patient_005", 0, "micro:1.9", 12000, 10000), ("patient_005", 1, "micro:0.23", 8000, 8000),
    ("patient_005", 2, "itc:0.18", 8000, 8000),
    ("patient_006", 0, "macro:2.15", 14000, 11000), ("patient_006", 1, "", 8000, 8000),
    ("patient_006", 2, "itc:0.17", 8000, 8000),
]
NEAR_MM = 0.093  # one map cell of the default model (96 px at 0.972 um/px): "near a border"


def near_border(d_mm: float) -> bool:
    return abs(d_mm - 0.2) <= NEAR_MM or abs(d_mm - 2.0) <= NEAR_MM


def make_slides(work: Path) -> list[Path]:
    from histoviewer.core.phantom import write_phantom

    slides = []
    (work / "slides").mkdir(parents=True, exist_ok=True)
    for i, (patient, node, lesions, w, h) in enumerate(CASES):
        path = work / "slides" / f"{patient}_node_{node}.tiff"
        if not path.exists():
            write_phantom(path, width=w, height=h, mpp=MPP, lesions=lesions, seed=100 + i, workers=1)
        slides.append(path)
    return slides


def match(gt: dict, lesions, cell_l0: float):
    """The detected lesion whose outline-centre lies nearest the GT centroid, within the GT
    radius plus one map cell (None: missed)."""
    gx, gy = gt["centroid_l0"]
    reach = gt["diameter_mm"] * 1000 / MPP / 2 + cell_l0
    best = None
    for les in lesions:
        d = math.hypot(les.l0_centroid[0] - gx, les.l0_centroid[1] - gy)
        if d <= reach and (best is None or d < best[0]):
            best = (d, les)
    return None if best is None else best[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_lesions"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep", action="store_true", help="keep the slides for a re-run")
    args = ap.parse_args()

    from histoviewer.core.analysis.case import write_case_outputs
    from histoviewer.core.analysis.detections import read_detections
    from histoviewer.core.analysis.froc import evaluate_slide, froc
    from histoviewer.core.analysis.kappa import stage_kappa
    from histoviewer.core.analysis.lesions import LesionParams, MapFrame, find_lesions
    from histoviewer.core.analysis.node_label import node_label
    from histoviewer.core.analysis.staging import NodeResult, stage_patient
    from histoviewer.core.analysis.truth import read_truth
    from histoviewer.core.inference.analyze import analyze_slide, slide_out_dir
    from histoviewer.core.grid_geometry import GridGeometry
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.staging_terms import NodeLabel, classify_diameter_mm

    t0 = time.perf_counter()
    slides = make_slides(args.work)
    t_phantom = time.perf_counter() - t0
    out_root = args.work / "out"
    shutil.rmtree(out_root, ignore_errors=True)
    model = open_model("cnn", device=args.device)
    t0 = time.perf_counter()
    summaries = []
    try:
        for s in slides:
            summaries.append(analyze_slide(s, slide_out_dir(out_root, s), model).to_dict())
    finally:
        model.close()
    t_analyze = time.perf_counter() - t0
    cases = write_case_outputs(out_root, summaries)

    # FROC from the files analyze wrote, as `histoviewer evaluate froc` reads them
    evals = []
    for d in read_detections(out_root):
        evals.append(evaluate_slide(d.slide, read_truth(args.work / "slides" / f"{d.slide}.xml"), d.detections,
                                    d.mpp, slide_score=d.slide_score))
    fr = froc(evals)

    rows, node_rows = [], []
    for s, summ in zip(slides, summaries):
        gt = json.loads(s.with_suffix(".lesions.json").read_text())
        folder = Path(summ["out_dir"])
        import tifffile

        encoded = tifffile.imread(folder / "probability.tiff")
        geo = GridGeometry.from_dict(summ["geometry"])
        corrected = find_lesions(encoded, MapFrame.from_geometry(geo), LesionParams())
        raw = find_lesions(encoded, MapFrame.from_geometry(geo, 0.0), LesionParams())
        for les in gt["lesions"]:
            m_c, m_r = match(les, corrected, geo.l0_stride), match(les, raw, geo.l0_stride)
            rows.append({"slide": s.stem, "true_mm": les["diameter_mm"], "class": les["size_class"],
                         "near": near_border(les["diameter_mm"]),
                         "corr_mm": None if m_c is None else m_c.diameter_mm,
                         "raw_mm": None if m_r is None else m_r.diameter_mm})
        gt_largest = max((x["diameter_mm"] for x in gt["lesions"]), default=None)
        node_rows.append({"slide": s.stem, "patient": s.stem.split("_node_")[0], "true": gt["node_label"],
                          "got": summ["node_label"], "raw": node_label(raw).value,
                          "near": gt_largest is not None and near_border(gt_largest)})

    def pct(k: int, n: int) -> str:
        return f"{k}/{n} = {100 * k / n:.0f}%" if n else "n/a"

    print(f"phantoms: {len(slides)} nodes of {len({r['patient'] for r in node_rows})} patients at {MPP} um/px, "
          f"written in {t_phantom:.0f} s; analysed in {t_analyze:.0f} s "
          f"({t_analyze / len(slides):.1f} s/slide, device {args.device}, {os.cpu_count()} CPUs)")
    print(f"FROC {fr.score:.4f} (" + ", ".join(f"{k:g}: {v:.2f}" for k, v in fr.sensitivity_at.items())
          + f"), {fr.lesions} lesions required, slide AUC "
          + ("n/a" if fr.slide_auc is None else f"{fr.slide_auc:.4f}"))
    print(f"ITC-sized evaluation regions (< 275 um after dilation): hit {pct(fr.itc_detected, fr.itc_lesions)}")
    itc_rows = [r for r in rows if r["class"] == "itc"]
    print(f"ITC lesions found by find_lesions (matched within radius + 1 cell): "
          f"{pct(sum(r['corr_mm'] is not None for r in itc_rows), len(itc_rows))}")
    print()
    print(f"{'slide':<22} {'class':<6} {'true mm':>8} {'corr mm':>8} {'err mm':>7} {'raw mm':>7} {'err mm':>7}  near")
    for r in rows:
        def f(v):
            return "   miss" if v is None else f"{v:7.3f}"

        ec = None if r["corr_mm"] is None else r["corr_mm"] - r["true_mm"]
        er = None if r["raw_mm"] is None else r["raw_mm"] - r["true_mm"]
        print(f"{r['slide']:<22} {r['class']:<6} {r['true_mm']:8.3f} {f(r['corr_mm'])} {f(ec)} {f(r['raw_mm'])} "
              f"{f(er)}  {'near' if r['near'] else ''}")
    for key, name in (("corr_mm", "window-corrected (analyze)"), ("raw_mm", "raw outline (baseline)")):
        found = [r for r in rows if r[key] is not None]
        err = np.array([r[key] - r["true_mm"] for r in found])
        for subset, label in ((found, "all"), ([r for r in found if not r["near"]], "away from borders")):
            ok = sum(classify_diameter_mm(r[key]).value == r["class"] for r in subset)
            print(f"{name:<28} {label:<18} class right {pct(ok, len(subset))} of detected")
        print(f"{name:<28} diameter error mm: mean {err.mean():+.3f}, mean |err| {np.abs(err).mean():.3f}, "
              f"max |err| {np.abs(err).max():.3f} (n={len(err)})")
    print()
    for key, name in (("got", "window-corrected (analyze)"), ("raw", "raw outline (baseline)")):
        for subset, label in ((node_rows, "all"), ([r for r in node_rows if not r["near"]], "away from borders")):
            ok = sum(r[key] == r["true"] for r in subset)
            print(f"node labels {name:<28} {label:<18} {pct(ok, len(subset))}")
    wrong = [f"{r['slide']}: {r['true']} -> {r['got']}" for r in node_rows if r["got"] != r["true"]]
    print("  wrong (analyze): " + ("; ".join(wrong) or "none"))

    patients = sorted({r["patient"] for r in node_rows})
    ref, got, raw_st, near_p = {}, {}, {}, set()
    for p in patients:
        nodes = [r for r in node_rows if r["patient"] == p]
        ref[p] = stage_patient(p, [NodeResult(r["slide"], NodeLabel(r["true"])) for r in nodes]).stage
        raw_st[p] = stage_patient(p, [NodeResult(r["slide"], NodeLabel(r["raw"])) for r in nodes]).stage
        if any(r["near"] for r in nodes):
            near_p.add(p)
    for r in cases.results:
        got[r.patient] = r.stage
    for st, name in ((got, "window-corrected (analyze)"), (raw_st, "raw outline (baseline)")):
        k = stage_kappa(ref, st)
        away = [p for p in patients if p not in near_p]
        k_away = stage_kappa({p: ref[p] for p in away}, {p: st[p] for p in away})
        print(f"pN {name:<28} kappa {k.kappa:.4f}, exact {pct(sum(ref[p] == st[p] for p in patients), len(patients))}; "
              f"away from borders: exact {pct(sum(ref[p] == st[p] for p in away), len(away))}"
              + ("" if k_away.kappa is None else f", kappa {k_away.kappa:.4f}"))
    for p in patients:
        print(f"  {p}: truth {ref[p].value:<8} analyze {got[p].value:<8} raw {raw_st[p].value:<8}"
              f"{'  (near a border)' if p in near_p else ''}")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
