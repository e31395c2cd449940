"""The correction loop, measured: fine-tune the default CNN from a few reviewed slides of a kind
it handles badly, and compare FROC and node labels on held-out slides of that kind.

    nice -n 10 python benchmarks/bench_finetune.py [--work /tmp/histoviewer-bench/finetune] [--keep]

The kind: phantom nodes whose metastases are lobular-like (``histoviewer phantom --morphology
lobular``: small uniform cells with scant cytoplasm, crowded like the lymphocytes around them),
which the default model (trained on PatchCamelyon and ductal-looking phantoms) mostly misses.

1. Phantoms under ``--work`` (never the repository): ``REVIEWED`` lobular slides for the
   pathologist, ``HELD_OUT`` lobular slides (positive and negative nodes) never used in training,
   and ``DUCTAL`` ordinary phantoms (to see whether the fine-tune forgot what the model knew).
2. "Before": ``histoviewer analyze`` of the held-out slides with the default CNN, then
   ``histoviewer evaluate froc`` and the node labels against the phantoms' ground truth.
3. The review, made programmatically as a pathologist would from the ground truth, and saved
   as the viewer saves it (the slide's annotation autosave): each AI lesion on a reviewed slide
   is accepted when it overlaps a true lesion and rejected when it does not; a true lesion the
   AI missed is drawn as a tumour annotation; ``NORMAL_BOXES`` rectangles of tissue away from
   every lesion are annotated "Normal".
4. The fine-tune, exactly as a user runs it: ``histoviewer train cnn --init cnn --data
   REVIEWED... --layout slides --out ...`` (2 CPU cores here), timed.
5. "After": the held-out and ductal slides analysed with the fine-tuned model, the same metrics.

Prints one table; ``--json FILE`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np
from scipy.ndimage import binary_dilation as _dilate
from skimage.draw import polygon as _polygon

MPP = 0.5
SIDE = 7000  # level-0 px: 3.5 mm square nodes, ~6 s to write and to analyse each
# (name, lesions, seed); the names start with "phantom" so model caveats say "synthetic phantom".
REVIEWED = [("phantom_rev_1", "micro:1.2,micro:0.6", 101), ("phantom_rev_2", "micro:0.9,micro:0.5", 102),
            ("phantom_rev_3", "micro:1.4", 103)]
HELD_OUT = [("phantom_test_1", "micro:1.1,micro:0.5", 201), ("phantom_test_2", "micro:1.5", 202),
            ("phantom_test_3", "micro:0.7,micro:0.4", 203), ("phantom_test_4", "micro:1.2,micro:0.5", 204),
            ("phantom_test_5", "", 205), ("phantom_test_6", "", 206)]
DUCTAL = [("phantom_ductal_1", "micro:1.1,micro:0.5", 301), ("phantom_ductal_2", "", 302)]
NORMAL_BOXES = 5  # normal-tissue rectangles a reviewer draws per slide (fewer where none fit)
NORMAL_BOX_L0 = 700  # their side, level-0 px (0.35 mm)


def hv(*args: str, json_out: bool = False) -> dict | None:
    """Run ``histoviewer ARGS`` with this tree first on the path; its JSON output when asked."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "histoviewer", *args] + (["--json"] if json_out else [])
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout) if json_out else None


def make_slides(work: Path) -> None:
    for folder, rows, morph in (("reviewed", REVIEWED, "lobular"), ("held_out", HELD_OUT, "lobular"),
                                ("ductal", DUCTAL, "ductal")):
        (work / folder).mkdir(parents=True, exist_ok=True)
        for name, lesions, seed in rows:
            out = work / folder / f"{name}.tiff"
            if not out.exists():
                hv("phantom", str(out), "--width", str(SIDE), "--height", str(SIDE), "--mpp", str(MPP),
                   "--lesions", lesions, "--seed", str(seed), "--morphology", morph, "--workers", "1")


def truth_polygons(slide: Path) -> list[np.ndarray]:
    from histoviewer.core.annotations.files import load_annotations

    aset = load_annotations(slide.with_suffix(".geojson")).annotation_set
    return [np.asarray(a.outline(), float) for a in aset.annotations]


def _raster(poly: np.ndarray, step: float = 8.0) -> set[tuple[int, int]]:
    from skimage.draw import polygon

    r, c = polygon(poly[:, 1] / step, poly[:, 0] / step)
    return set(zip(r.tolist(), c.tolist()))


def overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(_raster(a) & _raster(b))


def analyse(slides: list[Path], model: str, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    hv("analyze", *map(str, slides), "--model", model, "--out", str(out))


def ai_lesions(out: Path, slide: Path) -> list[tuple[np.ndarray, dict]]:
    """The AI lesions analyze wrote for ``slide``: (outline level-0 px, summary entry)."""
    from histoviewer.core.annotations.files import load_annotations

    summary = json.loads((out / slide.stem / "summary.json").read_text())
    aset = load_annotations(out / slide.stem / "lesions.geojson").annotation_set
    entries = {e["name"]: e for e in summary.get("lesions") or []}
    return [(np.asarray(a.outline(), float), entries.get(a.name, {})) for a in aset.annotations], summary


def review(slide: Path, out: Path, model_hash: str, first: bool = True) -> dict[str, int]:
    """Decide on every AI lesion and annotate what a pathologist would; save as the viewer does.
    ``first``: the first review of the slide (missed lesions drawn, normal regions annotated);
    a later one (after a fine-tune) only decides on the new model's hotspots, added to the
    decisions and annotations already saved."""
    from histoviewer.core.annotations.document import AnnotationDocument
    from histoviewer.core.annotations.review import (
        ReviewDecision,
        Verdict,
        hotspot_id,
        utc_now_iso,
    )
    from histoviewer.core.annotations.shapes import Annotation, ShapeKind
    from histoviewer.core.annotations.store import open_document, save_document
    from histoviewer.core.patches.tissue import slide_tissue_map
    from histoviewer.core.slide import open_slide
    from histoviewer.core.staging_terms import SizeClass

    truth = truth_polygons(slide)
    lesions, _summary = ai_lesions(out, slide)
    doc = AnnotationDocument(mpp=MPP) if first else open_document(slide, MPP)[0]
    counts = {"accepted": 0, "rejected": 0, "drawn_tumour": 0, "normal": 0}
    found = [False] * len(truth)
    for outline, entry in lesions:
        hits = [k for k, t in enumerate(truth) if overlaps(outline, t)]
        for k in hits:
            found[k] = True
        verdict = Verdict.TUMOUR if hits else Verdict.NOT_TUMOUR
        counts["accepted" if hits else "rejected"] += 1
        ring = tuple(map(tuple, outline))
        doc.set_decision(ReviewDecision(
            hotspot_id=hotspot_id(ring, model_hash), l0_outline=ring, verdict=verdict, reviewer="bench",
            decided_at=utc_now_iso(), model_hash=model_hash, ai_probability=entry.get("max_probability"),
            ai_size_class=SizeClass(entry.get("size_class", "unknown")), ai_diameter_mm=entry.get("diameter_mm")))
    if not first:
        save_document(doc, slide)
        return counts
    for k, t in enumerate(truth):
        if not found[k]:  # a lesion the AI missed: the pathologist draws it
            doc.add(Annotation(ShapeKind.POLYGON, tuple(map(tuple, t)), class_name="Tumor", name=f"missed {k}"))
            counts["drawn_tumour"] += 1
    # Normal tissue: boxes in tissue, at least half a box away from every true lesion and off every
    # AI lesion (seeded, as a person picks), tested on a coarse mask of the lesions.
    with open_slide(slide) as reader:
        tissue = slide_tissue_map(reader, l0_px_per_mask_px=32)
    step = 16.0
    side = int(np.ceil(SIDE / step))
    busy = np.zeros((side, side), bool)
    for poly in truth + [o for o, _ in lesions]:
        r, c = _polygon(poly[:, 1] / step, poly[:, 0] / step, busy.shape)
        busy[r, c] = True
    busy = _dilate(busy, iterations=int(NORMAL_BOX_L0 / 2 / step))
    rng = np.random.default_rng(len(slide.name))
    for _ in range(4000):
        if counts["normal"] >= NORMAL_BOXES:
            break
        x, y = rng.uniform(0, SIDE - NORMAL_BOX_L0, 2)
        if tissue.fractions(np.array([x]), np.array([y]), NORMAL_BOX_L0)[0] < 0.95:
            continue
        r0, c0, n = int(y / step), int(x / step), int(NORMAL_BOX_L0 / step)
        if busy[r0:r0 + n, c0:c0 + n].any():
            continue
        busy[r0:r0 + n, c0:c0 + n] = True  # boxes do not overlap each other either
        doc.add(Annotation(ShapeKind.RECTANGLE, ((x, y), (x + NORMAL_BOX_L0, y + NORMAL_BOX_L0)), class_name="Normal"))
        counts["normal"] += 1
    save_document(doc, slide)
    return counts


def true_label(slide: Path) -> str:
    from histoviewer.core.staging_terms import classify_diameter_mm

    data = json.loads(slide.with_suffix(".lesions.json").read_text())
    diam = [float(les["diameter_mm"]) for les in data.get("lesions", [])]
    if not diam:
        return "negative"
    return classify_diameter_mm(max(diam)).value


def metrics(slides: list[Path], out: Path, truth_dir: Path) -> dict:
    froc = hv("evaluate", "froc", "--truth", str(truth_dir), "--detections", str(out), json_out=True)
    exact = hv("evaluate", "froc", "--truth", str(truth_dir), "--detections", str(out), "--froc-variant",
               "exact-geometry", json_out=True)
    fps = sum(p["false_positives"] for p in exact["per_slide"]) / max(len(exact["per_slide"]), 1)
    labels = []
    for s in slides:
        summary = json.loads((out / s.stem / "summary.json").read_text())
        got = summary.get("node_label") or "unresolved"
        labels.append({"slide": s.name, "truth": true_label(s), "ai": got})
    right = sum(row["ai"] == row["truth"] for row in labels)
    return {"froc": froc, "froc_exact": exact, "fp_per_slide": fps, "labels": labels, "labels_right": right,
            "n": len(labels)}


def _froc_score(m: dict) -> float:
    f = m["froc"]
    return float(f.get("froc_score", f.get("froc", float("nan"))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/histoviewer-bench/finetune"))
    ap.add_argument("--keep", action="store_true", help="keep the phantoms for the next run")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=2, choices=(1, 2),
                    help="review-and-improve rounds (default 2: the fine-tuned model's hotspots reviewed again)")
    args = ap.parse_args()
    work = args.work
    t0 = time.perf_counter()
    make_slides(work)
    reviewed = sorted((work / "reviewed").glob("phantom_*.tiff"))
    held = sorted((work / "held_out").glob("phantom_*.tiff"))
    ductal = sorted((work / "ductal").glob("phantom_*.tiff"))
    for s in reviewed:  # a fresh review every run
        s.with_name(s.name + ".annotations.geojson").unlink(missing_ok=True)
    print(f"phantoms ready ({time.perf_counter() - t0:.0f} s): {len(reviewed)} reviewed, {len(held)} held out, "
          f"{len(ductal)} ductal", flush=True)

    from histoviewer.core.models.model_file import read_model_info
    from histoviewer.core.models.registry import resolve_model_path

    parent_hash = read_model_info(resolve_model_path("cnn")).content_hash
    analyse(reviewed, "cnn", work / "an_reviewed")
    counts = {s.name: review(s, work / "an_reviewed", parent_hash) for s in reviewed}
    print("review:", json.dumps(counts), flush=True)

    analyse(held, "cnn", work / "an_before")
    analyse(ductal, "cnn", work / "an_ductal_before")
    before = metrics(held, work / "an_before", work / "held_out")
    ductal_before = metrics(ductal, work / "an_ductal_before", work / "ductal")

    model_out = work / "cnn-lobular-ft.safetensors"
    model_out.unlink(missing_ok=True)
    t_ft = time.perf_counter()
    ft = hv("train", "cnn", "--init", "cnn", *[a for s in reviewed for a in ("--data", str(s))], "--layout", "slides",
            "--out", str(model_out), "--device", "cpu", json_out=True)
    ft_wall = time.perf_counter() - t_ft

    rounds = [(ft, ft_wall)]
    if args.rounds > 1:  # the loop again: review the fine-tuned model's hotspots, improve it again
        ft1_hash = ft["content_hash"]
        analyse(reviewed, str(model_out), work / "an_reviewed_2")
        counts2 = {s.name: review(s, work / "an_reviewed_2", ft1_hash, first=False) for s in reviewed}
        print("second review:", json.dumps(counts2), flush=True)
        model2 = work / "cnn-lobular-ft2.safetensors"
        model2.unlink(missing_ok=True)
        t2 = time.perf_counter()
        ft2 = hv("train", "cnn", "--init", str(model_out), *[a for s in reviewed for a in ("--data", str(s))],
                 "--layout", "slides", "--out", str(model2), "--device", "cpu", json_out=True)
        rounds.append((ft2, time.perf_counter() - t2))
        analyse(held, str(model2), work / "an_after_2")
        analyse(ductal, str(model2), work / "an_ductal_after_2")
        after2 = metrics(held, work / "an_after_2", work / "held_out")
        ductal_after2 = metrics(ductal, work / "an_ductal_after_2", work / "ductal")
    analyse(held, str(model_out), work / "an_after")
    analyse(ductal, str(model_out), work / "an_ductal_after")
    after = metrics(held, work / "an_after", work / "held_out")
    ductal_after = metrics(ductal, work / "an_ductal_after", work / "ductal")

    print()
    print(f"machine: {os.cpu_count()} CPUs ({os.getloadavg()[0]:.2f} load at the end); torch threads "
          f"{os.environ.get('OMP_NUM_THREADS', 'default')}")
    for k, (f, wall) in enumerate(rounds, start=1):
        rec = f["fine_tune"]
        print(f"fine-tune {k} (from {rec['parent']['name']}): {f['seconds']:.0f} s training ({wall:.0f} s wall "
              f"incl. start-up), {f['epochs_run']} epochs (best {f['best_epoch']}), patches train/valid/test "
              f"{rec['patches']['train']}/{rec['patches']['valid']}/{rec['patches']['test']}, "
              f"{rec['n_review_decisions']} decisions + {rec['n_annotations']} annotations; validation AUC "
              f"{rec['validation']['auc']:.3f}")
    cols = [("default", before, ductal_before), ("fine-tune 1", after, ductal_after)]
    if len(rounds) > 1:
        cols.append(("fine-tune 2", after2, ductal_after2))
    print(f"{'':<34}" + "".join(f"{c[0]:>14}" for c in cols))
    for what, pick in (("held-out lobular", 1), ("ductal (forgetting?)", 2)):
        print(f"{what} FROC (exact geometry)".ljust(34) + "".join(f"{c[pick]['froc_exact']['froc']:>14.3f}" for c in cols))
        print(f"{what} false lesions/slide".ljust(34) + "".join(f"{c[pick]['fp_per_slide']:>14.2f}" for c in cols))
        print(f"{what} FROC (CAMELYON16 script)".ljust(34) + "".join(f"{_froc_score(c[pick]):>14.3f}" for c in cols))
        print(f"{what} node labels right".ljust(34) + "".join(f"{c[pick]['labels_right']:>11}/{c[pick]['n']:<2}"
                                                             for c in cols))
    print("node labels (truth: " + " -> ".join(c[0] for c in cols) + "):")
    for i, row in enumerate(before["labels"] + ductal_before["labels"]):
        got = [(c[1]["labels"] + c[2]["labels"])[i]["ai"] for c in cols]
        print(f"  {row['slide']:<24} {row['truth']:<9}: " + " -> ".join(got))
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"review": counts, "rounds": [r[0] for r in rounds],
                                         "round_wall_s": [r[1] for r in rounds],
                                         "before": before, "after": after, "ductal_before": ductal_before,
                                         "ductal_after": ductal_after,
                                         **({"after_2": after2, "ductal_after_2": ductal_after2}
                                            if len(rounds) > 1 else {})}, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
