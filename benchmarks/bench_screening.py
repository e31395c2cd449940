"""Screened against exhaustive ``analyze``, in one run: work, wall time, labels, pN, FROC, ITCs.

    python benchmarks/bench_screening.py [--work /tmp/bench_screening] [--keep] [--rounds 1]
        [--big /tmp/histoviewer-bench/phantom-100k-200k.tiff | --no-big]
        [--screen resources/models/screen-pcam.safetensors] [--kaggle ../shared/data/patches/kaggle-sample]

For every phantom case of ``bench_lesions.py`` (22 nodes of 7 patients, written under
``--work``) and the CAMELYON-size phantom (``--big``, 100,000 x 200,000 px, written by
``bench_analyze.py`` once), ``analyze_slide`` runs with the default CNN twice, strategy
``exhaustive`` then ``screened`` (the same loaded models, interleaved slide by slide so both
see the same machine load), and prints:

- tissue patches and the patches the full model classified (screened: selection + margin +
  audit lattice, and the whole slide when the audit fell back);
- wall time of each (``analyze_slide``, outputs written; model loading excluded for both),
  split into the strategy's own seconds (the screen pass and the full model's passes) and
  the per-slide floor every analysis pays whatever the strategy (tissue detection, the
  thumbnail, writing the maps and heatmap, lesions, the learned label, summary), with
  ``--rounds N`` the whole comparison N times (the median round's ratio; the machine is
  shared, so each round's ratio is printed too) and the load average at every round;
- node labels and pN stages of both against the ground truth and against each other;
- CAMELYON16 FROC and the ITC detection rate of both (``evaluate froc``'s code on the files
  each wrote);
- real tissue: the screen's sensitivity and specificity at its threshold on the held-out
  (test) part of the Kaggle PatchCamelyon sample downsampled to 2.5x, the full model's on the
  same patches at 10x, and the share of tumour patches both call tumour (what screening keeps
  of the full model's patch sensitivity, before the margin).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks._common import machine_info  # noqa: E402
from benchmarks.bench_lesions import make_slides  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


# Tile decodes of the last analysis of each (slide, strategy): {level: (decodes, distinct tiles)}
DECODES: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}


@contextlib.contextmanager
def counting_decodes(key: tuple[str, str]):
    """Counts the tiles ``TiffRegionSource`` decodes (cache misses) per pyramid level while the
    block runs, into ``DECODES[key]`` (a lock and a counter a decode: ~1 us beside ~1 ms)."""
    from histoviewer.core.inference.tiff_regions import TiffRegionSource

    original = TiffRegionSource._tile
    seen: dict[int, list[int]] = {}
    lock = threading.Lock()

    def counting(self, page, index):
        with lock:
            seen.setdefault(self._pages.index(page), []).append(int(index))
        return original(self, page, index)

    TiffRegionSource._tile = counting
    try:
        yield
    finally:
        TiffRegionSource._tile = original
        DECODES[key] = {lv: (len(v), len(set(v))) for lv, v in sorted(seen.items())}


def analyse_both(slides, out_root: Path, model, screen):
    from histoviewer.core.inference.analyze import (
        AnalyzeOptions,
        analyze_slide,
        slide_out_dir,
    )

    rows = {"exhaustive": [], "screened": []}
    for s in slides:
        for strategy in ("exhaustive", "screened"):
            t0 = time.perf_counter()
            with counting_decodes((Path(s).stem, strategy)):
                summ = analyze_slide(
                    s,
                    slide_out_dir(out_root / strategy, s),
                    model,
                    AnalyzeOptions(strategy=strategy),
                    screen=screen,
                )
            rows[strategy].append((summ, time.perf_counter() - t0))
    return rows


def split_seconds(summ, wall: float) -> dict:
    """``wall`` of one analysis split: ``strategy`` (the screen pass and the full model's
    passes: what a strategy changes), ``floor`` (the rest), and the floor's named steps."""
    t = summ.timing
    strategy = t.classify_wall_s + float((summ.screening or {}).get("screen_s", 0.0))
    floor = wall - strategy
    return {"wall": wall, "strategy": strategy, "floor": floor, "tissue": t.tissue_s,
            "write": t.write_s, "lesions": t.lesions_s,
            "other": floor - t.tissue_s - t.write_s - t.lesions_s}


def summed(items) -> dict:
    out: dict = {}
    for summ, wall in items:
        for key, value in split_seconds(summ, wall).items():
            out[key] = out.get(key, 0.0) + value
    return out


def print_split(label: str, rounds_rows) -> dict:
    """Median over rounds of each strategy's summed split, and each round's ratio."""
    per_round = [{st: summed(rows[st]) for st in rows} for rows in rounds_rows]
    ratios = [r["screened"]["wall"] / r["exhaustive"]["wall"] for r in per_round]
    order = np.argsort(ratios)
    median = per_round[int(order[len(order) // 2])]
    e, s = median["exhaustive"], median["screened"]
    print(f"  {label}: wall ratio per round " + ", ".join(
        f"{x:.3f} ({r['screened']['wall']:.2f} / {r['exhaustive']['wall']:.2f} s)" for x, r in zip(ratios, per_round))
          + f" (median round {ratios[int(order[len(order) // 2])]:.3f})")
    for name, d in (("exhaustive", e), ("screened", s)):
        print(f"    {name:<10} wall {d['wall']:7.2f} s = strategy {d['strategy']:7.2f} s + floor {d['floor']:6.2f} s "
              f"(tissue {d['tissue']:.2f}, write {d['write']:.2f}, lesions {d['lesions']:.2f}, other {d['other']:.2f})")
    print(f"    strategy seconds screened / exhaustive: {s['strategy'] / max(e['strategy'], 1e-9):.3f}; floor "
          f"{s['floor']:.2f} s is {s['floor'] / e['wall']:.3f} of exhaustive's wall (ratio with no floor at all: "
          f"{s['strategy'] / max(e['strategy'], 1e-9):.3f}; lowest ratio this floor allows: {s['floor'] / e['wall']:.3f})")
    return {"ratios": ratios, "exhaustive": e, "screened": s,
            "walls": [[r["exhaustive"]["wall"], r["screened"]["wall"]] for r in per_round]}


def froc_of(out_dir: Path, truth_dir: Path, mpp_override=None):
    from histoviewer.core.analysis.detections import read_detections
    from histoviewer.core.analysis.froc import evaluate_slide, froc
    from histoviewer.core.analysis.truth import read_truth

    evals = []
    for d in read_detections(out_dir):
        evals.append(
            evaluate_slide(
                d.slide,
                read_truth(truth_dir / f"{d.slide}.xml"),
                d.detections,
                d.mpp,
                slide_score=d.slide_score,
            )
        )
    return froc(evals)


def stages_of(summaries, out_dir: Path):
    from histoviewer.core.analysis.case import write_case_outputs

    return {r.patient: r.stage for r in write_case_outputs(out_dir, summaries).results}


def real_tissue(kaggle: Path, model, screen, settings) -> dict:
    from histoviewer.core.models.metrics import binary_metrics
    from histoviewer.core.patches.open import open_patch_set
    from histoviewer.core.patches.split import select_part
    from histoviewer.core.training import predict_patch_set

    out = {}
    with open_patch_set(kaggle, screen.input, layout="kaggle", split="train") as data:
        part = select_part(data, screen.info.extra.get("sources") or [], "test")
        labels = data.labels[part.indices]
        ids = [data.ids[i] for i in part.indices]
        p_screen = predict_patch_set(screen, data, part.indices)
    with open_patch_set(kaggle, model.input, layout="kaggle", split="train") as data:
        # the full model's own test part may differ: score the screen's test patches by id
        index = {pid: i for i, pid in enumerate(data.ids)}
        p_full = predict_patch_set(model, data, [index[i] for i in ids])
    ms = binary_metrics(labels, p_screen, settings.threshold)
    thr_full = model.info.operating_point.threshold
    mf = binary_metrics(labels, p_full, thr_full)
    pos = labels == 1
    both = (p_screen >= settings.threshold) & (p_full >= thr_full)
    out.update(
        n=len(labels),
        tumour=int(pos.sum()),
        screen_auc=ms.auc,
        screen_sens=ms.sensitivity,
        screen_spec=ms.specificity,
        full_sens=mf.sensitivity,
        full_spec=mf.specificity,
        both_sens=float(both[pos].mean()),
        screen_passes_full_positives=int(
            np.count_nonzero(
                pos & (p_full >= thr_full) & (p_screen < settings.threshold)
            )
        ),
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_screening"))
    ap.add_argument(
        "--keep", action="store_true", help="keep the phantoms for a re-run"
    )
    ap.add_argument(
        "--big",
        type=Path,
        default=Path("/tmp/histoviewer-bench/phantom-100k-200k.tiff"),
    )
    ap.add_argument(
        "--no-big", action="store_true", help="skip the CAMELYON-size phantom"
    )
    ap.add_argument(
        "--screen", default="screen", help="screening model (default: the shipped one)"
    )
    ap.add_argument("--kaggle", type=Path, default=DATA / "patches" / "kaggle-sample")
    ap.add_argument(
        "--json", type=Path, default=None, help="also write the numbers here"
    )
    ap.add_argument("--nodes", type=int, default=None, help="only the first N phantom nodes (a quick check; FROC needs a lesion: 4 or more)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the whole comparison this many times (wall times are noisy on a shared machine)")
    args = ap.parse_args()

    from histoviewer.core.analysis.kappa import stage_kappa
    from histoviewer.core.analysis.staging import NodeResult, stage_patient
    from histoviewer.core.models.registry import open_model
    from histoviewer.core.models.screen_model import open_screen_model
    from histoviewer.core.staging_terms import NodeLabel

    print(f"machine: {json.dumps(machine_info())}", flush=True)
    t0 = time.perf_counter()
    slides = make_slides(args.work)[: args.nodes]
    print(f"phantoms ready in {time.perf_counter() - t0:.0f} s", flush=True)
    out_root = args.work / "out"
    shutil.rmtree(out_root, ignore_errors=True)
    model = open_model("cnn", device="cpu")
    screen = open_screen_model(args.screen, device="cpu")
    settings = screen[1]
    print(
        f"screen: {screen[0].info.name} ({screen[0].info.content_hash[:12]}), {settings.describe()}"
    )
    result: dict = {"machine": machine_info(), "screen": settings.to_dict()}
    all_rows, all_big = [], []
    try:
        for round_ in range(max(1, args.rounds)):
            print(f"round {round_ + 1}: load average {os.getloadavg()[0]:.2f}", flush=True)
            shutil.rmtree(out_root, ignore_errors=True)
            all_rows.append(analyse_both(slides, out_root, model, screen))
            if not args.no_big and args.big.exists():
                shutil.rmtree(args.work / "out-big", ignore_errors=True)
                all_big.append(analyse_both([args.big], args.work / "out-big", model, screen))
            print(f"round {round_ + 1} done: load average {os.getloadavg()[0]:.2f}", flush=True)
        # labels, FROC and ITCs from the last round (its files are the ones on disk)
        rows = all_rows[-1]
        big_rows = all_big[-1] if all_big else None
        real = (
            real_tissue(args.kaggle, model, screen[0], settings)
            if args.kaggle.exists()
            else None
        )
    finally:
        model.close()
        screen[0].close()

    def totals(items):
        tissue = sum(s.tissue_patches for s, _ in items)
        full = sum(s.classified_patches + s.failed_patches for s, _ in items)
        wall = sum(t for _, t in items)
        return tissue, full, wall

    te, fe, we = totals(rows["exhaustive"])
    ts, fs, ws = totals(rows["screened"])
    print("\nWhere the wall time goes (sums over slides; strategy = screen pass + full-model passes):")
    split_nodes = print_split(f"bench_lesions phantoms ({len(slides)} nodes)", all_rows)
    split_big = print_split(args.big.name, all_big) if all_big else None
    print(f"\nbench_lesions phantoms ({len(slides)} nodes, {os.cpu_count()} CPUs), last round:")
    print(f"  exhaustive: full model on {fe}/{te} tissue patches, {we:.1f} s")
    print(
        f"  screened:   full model on {fs}/{ts} tissue patches = {fs / ts:.3f} (goal <= 0.333), "
        f"{ws:.1f} s = {ws / we:.3f} of exhaustive (goal <= 0.333)"
    )
    fallbacks = [
        s.slide for s, _ in rows["screened"] if (s.screening or {}).get("fallback")
    ]
    print(
        f"  audit fallbacks (whole slide classified after a screen miss): {len(fallbacks)} "
        + (", ".join(Path(f).stem for f in fallbacks))
    )
    print(
        f"\n{'slide':<22} {'truth':<9} {'exh':<9} {'scr':<9} {'tissue':>6} {'full':>6} {'exh s':>6} {'scr s':>6}"
    )
    node_truth, labels = {}, {"exhaustive": {}, "screened": {}}
    for i, s in enumerate(slides):
        gt = json.loads(s.with_suffix(".lesions.json").read_text())
        (se, te_s), (ss, ts_s) = rows["exhaustive"][i], rows["screened"][i]
        node_truth[s.stem] = gt["node_label"]
        labels["exhaustive"][s.stem], labels["screened"][s.stem] = (
            se.node_label.value,
            ss.node_label.value,
        )
        print(
            f"{s.stem:<22} {gt['node_label']:<9} {se.node_label.value:<9} {ss.node_label.value:<9} "
            f"{ss.tissue_patches:>6} {ss.classified_patches + ss.failed_patches:>6} {te_s:>6.1f} {ts_s:>6.1f}"
        )
    same_labels = sum(
        labels["exhaustive"][k] == labels["screened"][k] for k in node_truth
    )
    print(f"node labels identical: {same_labels}/{len(node_truth)}")
    for strategy in ("exhaustive", "screened"):
        judged = [s.domain for s, _ in rows[strategy]]
        print(
            f"tissue check ({strategy}): assessed on {sum(d.assessed for d in judged)}/{len(judged)} slides, "
            f"out of domain {sum(d.out_of_domain for d in judged)}, median judged patches "
            f"{int(np.median([d.patches for d in judged]))}, {sum(d.patches for d in judged)} in all "
            "(the descriptor's share of the strategy's seconds)"
        )
    for strategy in ("exhaustive", "screened"):
        ok = sum(labels[strategy][k] == node_truth[k] for k in node_truth)
        print(f"node labels right ({strategy}): {ok}/{len(node_truth)}")

    patients = sorted({k.split("_node_")[0] for k in node_truth})
    ref = {
        p: stage_patient(
            p,
            [
                NodeResult(k, NodeLabel(v))
                for k, v in node_truth.items()
                if k.startswith(p + "_")
            ],
        ).stage
        for p in patients
    }
    got = {st: stages_of([s for s, _ in rows[st]], out_root / st) for st in rows}
    same_pn = sum(got["exhaustive"][p] == got["screened"][p] for p in patients)
    print(f"pN identical: {same_pn}/{len(patients)}")
    frocs = {}
    for st in rows:
        try:
            kappa = f"{stage_kappa(ref, got[st]).kappa:.4f}"
        except Exception as exc:  # noqa: BLE001 - an unknown stage: say so, go on
            kappa = f"n/a ({exc})"
        fr = froc_of(out_root / st, args.work / "slides")
        frocs[st] = fr
        print(
            f"{st:<10} pN right {sum(ref[p] == got[st][p] for p in patients)}/{len(patients)}, kappa "
            f"{kappa}; FROC {fr.score:.4f}; ITC regions hit {fr.itc_detected}/{fr.itc_lesions}; stages "
            + ", ".join(f"{p[-3:]} {got[st][p].value}" for p in patients)
        )
    result["lesions"] = {
        "exhaustive": {
            "tissue": te,
            "full": fe,
            "wall_s": round(we, 2),
            "froc": frocs["exhaustive"].score,
            "itc_hit": frocs["exhaustive"].itc_detected,
        },
        "screened": {
            "tissue": ts,
            "full": fs,
            "wall_s": round(ws, 2),
            "froc": frocs["screened"].score,
            "itc_hit": frocs["screened"].itc_detected,
            "fallbacks": len(fallbacks),
        },
        "itc_lesions": frocs["screened"].itc_lesions,
        "labels_identical": same_labels,
        "nodes": len(node_truth),
        "pn_identical": same_pn,
        "patients": len(patients),
        "split": split_nodes,
    }

    if big_rows is not None:
        (se, te_b), (ss, ts_b) = big_rows["exhaustive"][0], big_rows["screened"][0]
        full_b = ss.classified_patches + ss.failed_patches
        gt = json.loads(args.big.with_suffix(".lesions.json").read_text())
        print(
            f"\nCAMELYON-size phantom {args.big.name} ({ss.tissue_patches} tissue patches, truth {gt['node_label']}):"
        )
        print(
            f"  exhaustive: {te_b:.1f} s, label {se.node_label.value}, lesions "
            + ", ".join(f"{les.diameter_mm:.3f} mm" for les in se.lesions)
        )
        print(
            f"  screened:   {ts_b:.1f} s = {ts_b / te_b:.3f} of exhaustive, full model on {full_b}/"
            f"{ss.tissue_patches} = {full_b / ss.tissue_patches:.3f}, label {ss.node_label.value}, lesions "
            + ", ".join(f"{les.diameter_mm:.3f} mm" for les in ss.lesions)
        )
        scr = ss.screening or {}
        print(
            f"  screen pass {scr.get('screen_s', 0):.1f} s; flagged {scr.get('flagged')}, audit "
            f"{scr.get('audit')} ({scr.get('audit_misses')} misses), fallback: {scr.get('fallback')}"
        )
        decodes = {st: DECODES.get((args.big.stem, st), {}) for st in big_rows}
        print("  tile decodes, last round (level: decodes / distinct tiles): " + "; ".join(
            f"{st} " + ", ".join(f"{lv}: {n}/{d}" for lv, (n, d) in decodes[st].items()) for st in decodes))
        fb = {
            st: froc_of(args.work / "out-big" / st, args.big.parent) for st in big_rows
        }
        print(
            f"  FROC exhaustive {fb['exhaustive'].score:.4f}, screened {fb['screened'].score:.4f}; ITC hit "
            f"{fb['exhaustive'].itc_detected}/{fb['exhaustive'].itc_lesions} vs "
            f"{fb['screened'].itc_detected}/{fb['screened'].itc_lesions}"
        )
        result["big"] = {
            "tissue": ss.tissue_patches,
            "full": full_b,
            "exhaustive_s": round(te_b, 2),
            "screened_s": round(ts_b, 2),
            "labels": [se.node_label.value, ss.node_label.value],
            "froc": [fb["exhaustive"].score, fb["screened"].score],
            "split": split_big,
            "tile_decodes": {st: {str(lv): list(v) for lv, v in d.items()} for st, d in decodes.items()},
        }
    if real is not None:
        print(
            f"\nreal tissue: Kaggle PatchCamelyon sample, the screen's held-out test part ({real['n']} patches, "
            f"{real['tumour']} tumour):"
        )
        print(
            f"  screen at 2.5x, threshold {settings.threshold:.3g}: sensitivity {100 * real['screen_sens']:.1f} %, "
            f"specificity {100 * real['screen_spec']:.1f} %, AUC {real['screen_auc']:.3f}"
        )
        print(
            f"  full model at 10x, its operating point: sensitivity {100 * real['full_sens']:.1f} %, "
            f"specificity {100 * real['full_spec']:.1f} %"
        )
        print(
            f"  tumour patches both call tumour: {100 * real['both_sens']:.1f} %; full-model positives the "
            f"screen passed: {real['screen_passes_full_positives']} (before the margin)"
        )
        result["real"] = real
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
