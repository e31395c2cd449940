"""Rules vs the learned node classifier on held-out phantom patients.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_node_classifier.py [--patients 120] [--seed 2]
        [--classifier resources/models/node-forest-phantom.safetensors] [--retrain-patients 0]

Synthesises ``--patients`` phantom patients (3-5 nodes each, ``core/phantom/node_cohort.py``:
negative, ITC, micro, macro nodes, nodes whose largest lesion lies near a class border,
0.18-0.22 mm and 1.8-2.2 mm, and 30 % noisy maps with false-positive specks) from seed
``--seed``, numbered from patient 500 on, so they share no patient with the shipped
classifier's training cohort (seed 1, patients 0-159). The maps are synthesised from the
phantoms' layouts with a model of the default CNN's response (``core/phantom/node_maps.py``),
not made by the CNN. Each node gets the rule-based label (size class of the largest lesion,
what ``analyze`` states) and the learned classifier's label, both from the same map; prints
node accuracy (all, near a border, noisy maps, clean maps away from borders), the confusion
of each, and the pN quadratic weighted kappa of each (``core/analysis/kappa.py``) against
the phantoms' truth. ``--retrain-patients N`` trains a fresh forest on N patients of seed 1
in the same run instead of loading the file.

``--cnn-analyses OUT`` (e.g. ``bench_lesions.py --keep``'s ``/tmp/bench_lesions/out``) adds the
same comparison on phantom slides the default CNN really analysed: the learned label each
``summary.json`` holds against the phantom truth beside each slide (``<slide>.lesions.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

LABELS = ("negative", "itc", "micro", "macro")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=120)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument(
        "--classifier", type=Path, default=None, help="default: the shipped one"
    )
    ap.add_argument("--retrain-patients", type=int, default=0)
    ap.add_argument("--cnn-analyses", type=Path, default=None, metavar="OUT")
    args = ap.parse_args()

    from histoviewer.cli.node_classifier import _default_threshold
    from histoviewer.core.analysis.kappa import stage_kappa
    from histoviewer.core.analysis.learned_label import (
        default_node_classifier_path,
        load_node_classifier,
    )
    from histoviewer.core.analysis.staging import NodeResult, stage_patient
    from histoviewer.core.phantom.node_cohort import phantom_cohort, rule_label
    from histoviewer.core.staging_terms import NodeLabel
    from histoviewer.core.training.node_classifier import fit_node_forest

    threshold = _default_threshold()
    if args.retrain_patients:
        t0 = time.perf_counter()
        train = phantom_cohort(args.retrain_patients, 1, threshold)
        forest, oob = fit_node_forest(
            [c.example for c in train], name="bench", caution="", trained_on={}
        )
        predict = forest.predict
        what = (
            f"fresh forest on {len(train)} nodes of {args.retrain_patients} patients "
            f"(seed 1), OOB {oob:.3f}, {time.perf_counter() - t0:.0f} s"
        )
    else:
        path = args.classifier or default_node_classifier_path()
        clf = load_node_classifier(path)
        predict = clf.forest.predict
        tr = clf.forest.description.get("trained_on", {})
        what = f"{path.name} ({clf.forest.trees} trees, trained on {tr.get('nodes')} nodes, hash {clf.forest.content_hash[:12]})"

    t0 = time.perf_counter()
    cohort = phantom_cohort(args.patients, args.seed, threshold, first_patient=500)
    t_maps = time.perf_counter() - t0
    t0 = time.perf_counter()
    rules = [rule_label(c, threshold).value for c in cohort]
    t_rules = time.perf_counter() - t0
    t0 = time.perf_counter()
    learned = predict(np.stack([c.example.features for c in cohort]))
    t_forest = time.perf_counter() - t0
    truth = [c.example.label.value for c in cohort]

    print(
        f"held-out phantoms: {len(cohort)} nodes of {args.patients} patients (seed {args.seed}), maps synthesised "
        f"in {t_maps:.0f} s; lesion threshold {threshold:.4f} (default CNN operating point); {os.cpu_count()} CPUs"
    )
    print(
        f"learned: {what}; rules {t_rules:.1f} s, forest {1000 * t_forest / len(cohort):.2f} ms/node"
    )
    subsets = {
        "all nodes": lambda c: True,
        "near a border (0.18-0.22, 1.8-2.2 mm)": lambda c: c.near_border,
        "noisy maps (false-positive specks)": lambda c: c.noisy,
        "clean maps, away from borders": lambda c: not c.noisy and not c.near_border,
    }
    print(f"\n{'node accuracy':<42} {'n':>4} {'rules':>14} {'learned':>14}")
    for name, keep in subsets.items():
        idx = [i for i, c in enumerate(cohort) if keep(c)]
        r = sum(rules[i] == truth[i] for i in idx)
        f = sum(learned[i] == truth[i] for i in idx)
        n = len(idx)
        print(
            f"{name:<42} {n:>4} {r:>4}/{n:<3}={100 * r / n:4.0f}% {f:>4}/{n:<3}={100 * f / n:4.0f}%"
        )
    for name, got in (("rules", rules), ("learned", learned)):
        confusion = Counter(zip(truth, got))
        print(
            f"\nconfusion, {name} (rows truth, columns {name}): "
            + " ".join(f"{x:>8}" for x in LABELS)
        )
        for t in LABELS:
            print(f"  {t:<8}" + " ".join(f"{confusion[(t, g)]:>8}" for g in LABELS))

    patients = sorted({c.patient for c in cohort})
    stages = {}
    for name, got in (("truth", truth), ("rules", rules), ("learned", learned)):
        stages[name] = {
            p: stage_patient(
                p,
                [
                    NodeResult(c.node, NodeLabel(got[i]))
                    for i, c in enumerate(cohort)
                    if c.patient == p
                ],
            ).stage
            for p in patients
        }
    near = {c.patient for c in cohort if c.near_border}
    noisy = {c.patient for c in cohort if c.noisy}
    print()
    for name in ("rules", "learned"):
        parts = []
        for label, keep in (
            ("all", set(patients)),
            ("with a near-border node", near),
            ("with a noisy map", noisy),
        ):
            ps = [p for p in patients if p in keep]
            k = stage_kappa(
                {p: stages["truth"][p] for p in ps}, {p: stages[name][p] for p in ps}
            )
            exact = sum(stages["truth"][p] == stages[name][p] for p in ps)
            parts.append(
                f"{label} ({len(ps)}): kappa {'n/a' if k.kappa is None else f'{k.kappa:.3f}'}, "
                f"exact {exact}/{len(ps)}"
            )
        print(f"pN {name:<8} " + "; ".join(parts))
    if args.cnn_analyses is not None:
        cnn_maps(args.cnn_analyses)
    return 0


def cnn_maps(out: Path) -> None:
    """Rules vs the learned label on CNN-analysed phantom slides (module docstring)."""
    from histoviewer.core.analysis.kappa import stage_kappa
    from histoviewer.core.analysis.staging import NodeResult, stage_patient
    from histoviewer.core.analysis.summary import read_summary
    from histoviewer.core.staging_terms import NodeLabel

    rows = []
    for folder in sorted(p for p in out.iterdir() if (p / "summary.json").is_file()):
        s = read_summary(folder)
        slide = Path(s.slide)
        truth = json.loads(
            slide.with_name(slide.with_suffix("").name + ".lesions.json").read_text()
        )["node_label"]
        learned = (
            s.learned.label.value
            if s.learned is not None and s.learned.shown
            else "unknown"
        )
        rows.append(
            (
                slide.stem.split("_node_")[0],
                slide.name,
                truth,
                s.node_label.value,
                learned,
            )
        )
    n = len(rows)
    r = sum(t == g for _p, _s, t, g, _l in rows)
    f = sum(t == lab for _p, _s, t, _g, lab in rows)
    print(
        f"\nCNN-analysed phantoms ({out}): {n} nodes; node accuracy rules {r}/{n}, learned {f}/{n}"
    )
    for _p, slide, t, g, lab in rows:
        if g != t or lab != t:
            print(f"  {slide}: truth {t}, rules {g}, learned {lab}")
    patients = sorted({p for p, *_ in rows})
    for name, col in (("rules", 3), ("learned", 4)):
        ref = {
            p: stage_patient(
                p, [NodeResult(x[1], NodeLabel(x[2])) for x in rows if x[0] == p]
            ).stage
            for p in patients
        }
        got = {
            p: stage_patient(
                p, [NodeResult(x[1], NodeLabel(x[col])) for x in rows if x[0] == p]
            ).stage
            for p in patients
        }
        k = stage_kappa(ref, got)
        print(
            f"  pN {name:<8} kappa {'n/a' if k.kappa is None else f'{k.kappa:.3f}'}, "
            f"exact {sum(ref[p] == got[p] for p in patients)}/{len(patients)}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
