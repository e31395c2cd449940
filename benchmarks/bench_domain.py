"""Out-of-domain detection: which slides and patch sets each model flags, with detection and
false-alarm rates (issue 13, section 3).

For every model (default: the registry's ``cnn`` and ``handcrafted``) and two profiles:

- ``file``: the domain profile stored in the model file (as trained);
- ``+phantom`` (with ``--phantom-variant``): a profile fitted on kaggle-sample plus patches of
  the training phantoms (what the shipped models, trained on both, carry);

it runs the real ``analyze`` pipeline on slides it builds (the five CAMELYON17 centre tiles
as pyramidal slides at 0.5 um/px, small phantoms, CMU-1 skin, the flat RGB kidney and the
OpenSlide "boxes" fixture at an assumed 0.5 um/px) and judges held-out patch sets in
pseudo-slides of 100 patches (kaggle-sample test part, PCam hard negatives,
CAMELYON16 40x patches). Expected: CMU-1, kidney and boxes flagged ("ood"); everything else
not ("in"); phantoms are "in" for a profile that saw phantoms and not counted ("n/a") for one
that did not (a real-tissue-only model has no claim on synthetic tissue either way).

    PYTHONPATH=. python benchmarks/bench_domain.py --models m1.safetensors m2.safetensors \\
        --work /tmp/bench-domain --phantom-variant [--json out.json]

Needs ../shared/data (see its README). Slides and phantoms are built once under --work.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from copy import copy
from pathlib import Path

import numpy as np
from PIL import Image

from histoviewer.core.domain_training import add_domain_profile
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.models.domain import judge_slide
from histoviewer.core.models.domain_fit import read_in_batches, sample_indices
from histoviewer.core.models.registry import open_model
from histoviewer.core.patches.open import open_patch_set
from histoviewer.core.patches.split import three_way_split
from histoviewer.core.slide import open_slide
from histoviewer.core.slide.pyramid_writer import (
    EncodedRow,
    encode_jpeg,
    write_pyramidal_tiff,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PSEUDO_SLIDE = 100  # patches per pseudo-slide of a patch set
ASSUMED_MPP = 0.5  # tiles, kidney, boxes: scale not recorded (lymphocyte nuclei ~7 um put tiles near 0.5)


def write_slide(rgb: np.ndarray, path: Path, mpp: float, tile: int = 512) -> Path:
    """A small pyramidal JPEG TIFF of ``rgb`` at ``mpp`` (white padding to whole tiles)."""
    h, w = rgb.shape[:2]
    big = np.full((math.ceil(h / tile) * tile, math.ceil(w / tile) * tile, 3), 255, np.uint8)
    big[:h, :w] = rgb

    def rows():
        for r in range(0, big.shape[0], tile):
            strip = big[r:r + tile]
            yield EncodedRow(tuple(encode_jpeg(np.ascontiguousarray(strip[:, c:c + tile]), 90)
                                   for c in range(0, big.shape[1], tile)),
                             np.asarray(Image.fromarray(strip).reduce(2)))

    write_pyramidal_tiff(path, rows(), width=w, height=h, tile_size=tile, jpeg_quality=90, mpp=mpp,
                         pad_rgb=(255, 255, 255))
    return path


def phantom(path: Path, seed: int, lesions: str) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "histoviewer", "phantom", str(path), "--width", "16000",
                        "--height", "12000", "--seed", str(seed), "--workers", "1", "--lesions", lesions,
                        "--json"], check=True, stdout=subprocess.DEVNULL)
    return path


def build_slides(work: Path) -> tuple[list[tuple[str, Path, str]], Path]:
    """(name, slide, expected "in"/"ood"/"phantom") and the folder of training phantoms."""
    slides_dir = work / "slides"
    slides_dir.mkdir(parents=True, exist_ok=True)
    out: list[tuple[str, Path, str]] = []
    for tile in sorted((DATA / "tiles").glob("*.jpeg")):
        path = slides_dir / f"{tile.stem}.tiff"
        if not path.exists():
            write_slide(np.asarray(Image.open(tile).convert("RGB")), path, ASSUMED_MPP)
        out.append((tile.stem.split("_patient")[0] + " tile", path, "in"))
    train_dir = work / "train-phantoms"
    phantom(train_dir / "phantom-1.tiff", 1, "micro:0.8,itc:0.15")
    phantom(train_dir / "phantom-2.tiff", 2, "micro:0.8,itc:0.15")
    out.append(("phantom (held out)", phantom(slides_dir / "phantom-3.tiff", 3, "micro:1.5,itc:0.15"), "phantom"))
    out.append(("phantom (negative)", phantom(slides_dir / "phantom-4.tiff", 4, ""), "phantom"))
    out.append(("CMU-1 skin", DATA / "slides" / "CMU-1-Small-Region.svs", "ood"))
    kidney = slides_dir / "kidney-0.5.tiff"
    if not kidney.exists() and (DATA / "slides" / "flat-rgb-kidney.tif").exists():
        with open_slide(DATA / "slides" / "flat-rgb-kidney.tif") as r:
            write_slide(np.asarray(r.read_region(0, 0, 0, *r.info.dimensions))[..., :3], kidney, ASSUMED_MPP)
    if kidney.exists():
        # a macro image of a tiny biopsy: at any plausible scale hardly a tissue patch; shown, not counted
        out.append(("kidney (flat RGB, 0.5 assumed)", kidney, "n/a"))
    boxes = slides_dir / "boxes-x8.tiff"
    src = DATA / "slides" / "openslide-fixtures" / "boxes.tiff"
    if not boxes.exists() and src.exists():
        with open_slide(src) as r:
            rgb = np.asarray(r.read_region(0, 0, 0, *r.info.dimensions))[..., :3]
        write_slide(np.repeat(np.repeat(rgb, 8, 0), 8, 1), boxes, ASSUMED_MPP)
    if boxes.exists():
        out.append(("boxes fixture (x8, 0.5 assumed)", boxes, "ood"))
    return out, train_dir


def patch_sets(spec) -> list[tuple[str, object, np.ndarray, str]]:
    """(name, patch set, indices, expected) of the held-out patch sets."""
    out = []
    kaggle = open_patch_set(DATA / "patches" / "kaggle-sample", spec, layout="kaggle", split="train")
    # the shipped models' cut (70 / 15 / 15 %, split seed 0): their test part, never trained on
    test = three_way_split(kaggle, 0.15, 0.15, 0).part("test")
    out.append(("kaggle-sample test (held out)", kaggle, test, "in"))
    negs = open_patch_set(DATA / "patches" / "pcam-96px-negatives", spec, layout="images", patch_mpp=0.972, label=0)
    out.append(("PCam hard negatives", negs, sample_indices(np.arange(len(negs)), 1000, 0), "in"))
    c16 = open_patch_set(DATA / "patches" / "camelyon16-256px-40x", spec, patch_mpp=0.25)
    out.append(("CAMELYON16 40x patches", c16, np.arange(len(c16)), "in"))
    return out


def judge_patch_set(model, ps, idx: np.ndarray) -> tuple[int, int, float]:
    """(pseudo-slides, flagged, share of patches beyond the per-patch threshold)."""
    dist = np.concatenate([model.classify(b).domain_distance for b in read_in_batches(ps, idx)])
    n_slides = max(1, len(dist) // PSEUDO_SLIDE)
    flagged = sum(judge_slide(chunk, model.domain, complete=True).out_of_domain
                  for chunk in np.array_split(dist, n_slides))
    return n_slides, int(flagged), float(np.mean(dist > model.domain.patch_threshold))


def evaluate(model, label: str, slides, sets, work: Path, sees_phantoms: bool) -> list[dict]:
    rows = []
    for name, path, expect in slides:
        if expect == "phantom":  # synthetic tissue: in domain only for a profile that saw phantoms
            expect = "in" if sees_phantoms else "n/a"
        t0 = time.perf_counter()
        s = analyze_slide(path, work / "runs" / label / path.stem, model, AnalyzeOptions())
        v = s.domain
        rows.append({"profile": label, "source": name, "expect": expect, "units": 1,
                     "flagged": int(v.out_of_domain), "share": v.score, "patches": v.patches,
                     "status": v.status, "node_label": s.node_label.value, "seconds": round(time.perf_counter() - t0, 1)})
    for name, ps, idx, expect in sets:
        n, flagged, share = judge_patch_set(model, ps, idx)
        rows.append({"profile": label, "source": name, "expect": expect, "units": n, "flagged": flagged,
                     "share": round(share, 4), "patches": len(idx), "status": f"{flagged}/{n} pseudo-slides",
                     "node_label": "", "seconds": 0.0})
    return rows


def rates(rows: list[dict]) -> dict[str, float | int]:
    ood = [r for r in rows if r["expect"] == "ood"]
    ind = [r for r in rows if r["expect"] == "in"]
    det = sum(r["flagged"] for r in ood), sum(r["units"] for r in ood)
    fa = sum(r["flagged"] for r in ind), sum(r["units"] for r in ind)
    return {"detected": det[0], "ood_units": det[1], "false_alarms": fa[0], "in_units": fa[1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["cnn", "handcrafted"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-domain"))
    ap.add_argument("--phantom-variant", action="store_true",
                    help="also fit a profile on kaggle-sample + training-phantom patches and evaluate it")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not (DATA / "patches" / "kaggle-sample").is_dir():
        print(f"skipped: {DATA} has no kaggle-sample", file=sys.stderr)
        return 0
    slides, train_dir = build_slides(args.work)
    shutil.rmtree(args.work / "runs", ignore_errors=True)
    all_rows = []
    for spec_name in args.models:
        model = open_model(spec_name, device="cpu")
        tag = Path(spec_name).stem
        sets = patch_sets(model.input)
        variants = []
        if model.domain is not None:
            variants.append((f"{tag}:file", model, "phantom" in (model.domain.data or "").lower()))
        else:
            print(f"{spec_name}: no domain profile in the file (verdicts would be 'not assessed')")
        if args.phantom_variant:
            var = copy(model)
            kaggle = open_patch_set(DATA / "patches" / "kaggle-sample", model.input, layout="kaggle", split="train")
            phantoms = open_patch_set(train_dir, model.input, layout="slides")
            add_domain_profile(var, [kaggle, phantoms])
            variants.append((f"{tag}:+phantom", var, True))
        for label, m, sees_phantoms in variants:
            d = m.domain
            print(f"\n{label}: patch threshold {d.patch_threshold:.2f} (p{d.patch_percentile:g} of {d.n_heldout} "
                  f"validation patches), slide rule share >= {d.slide_share_threshold:.2f}; fitted on {d.data}")
            rows = evaluate(m, label, slides, sets, args.work, sees_phantoms)
            print(f"  {'source':34s} {'expect':6s} {'share':>6s} {'patches':>7s}  verdict")
            for r in rows:
                ok = ("ok" if r["flagged"] == (0 if r["expect"] == "in" else r["units"]) else "WRONG") \
                    if r["expect"] != "n/a" else "not counted"
                share = "" if r["share"] is None else f"{r['share']:.3f}"
                print(f"  {r['source']:34s} {r['expect']:6s} {share:>6s} {r['patches']:7d}  {r['status']}"
                      f"{' -> ' + r['node_label'] if r['node_label'] else ''}  [{ok}]")
            rt = rates(rows)
            print(f"  detection {rt['detected']}/{rt['ood_units']}, false alarms {rt['false_alarms']}/{rt['in_units']}")
            all_rows += rows
    if args.json:
        args.json.write_text(json.dumps(all_rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
