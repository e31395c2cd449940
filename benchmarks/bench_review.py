"""Costs of the review queue: what one decision costs (record it, rebuild the queue, the
label as reviewed) and what decisions add to the autosave, for a slide with 40 and 1,000
hotspots.

    python benchmarks/bench_review.py [--repeats 20]

Baselines, measured in the same run (the machine is shared: compare the ratios): the lesion
analysis of a whole-slide live map (``analyse_map``, 268 x 536 cells, the viewer runs it
anyway whenever the map changes) for the decision, and the autosave of the same document
without decisions for the save.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import Summary, machine_info, table  # noqa: I001 - puts the repo on sys.path

from histoviewer.core.analysis.lesions import Lesion, LesionParams, MapFrame
from histoviewer.core.analysis.node_label import analyse_map
from histoviewer.core.analysis.review_queue import build_queue, decide, reviewed_label
from histoviewer.core.annotations import Annotation, AnnotationDocument, ShapeKind
from histoviewer.core.annotations.review import Verdict
from histoviewer.core.annotations.store import save_document
from histoviewer.core.staging_terms import classify_diameter_mm

MODEL = "b" * 64
MPP = 0.25


def lesions(n: int, seed: int = 0) -> list[Lesion]:
    """``n`` lesions with 64-vertex outlines, 0.05-3 mm, spread over a 100k x 200k px slide."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        d_mm = float(rng.uniform(0.05, 3.0))
        r = d_mm * 1000 / MPP / 2
        cx, cy = float(rng.uniform(r, 200_000 - r)), float(rng.uniform(r, 100_000 - r))
        a = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        ring = tuple(zip((cx + r * np.cos(a)).tolist(), (cy + r * np.sin(a)).tolist()))
        out.append(Lesion(i + 1, ring, (cx, cy), (cx - r, cy - r, 2 * r, 2 * r), (ring[0], ring[32]), 2 * r, d_mm,
                          np.pi * (d_mm / 2) ** 2, float(rng.uniform(0.5, 1.0)), 0.6, 10,
                          classify_diameter_mm(d_mm)))
    return out


def whole_slide_map(n_lesions: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.full((268, 536), -1.0, np.float32)
    m[20:250, 30:500] = rng.random((230, 470)) * 0.1
    for _ in range(n_lesions):
        r, c, s = rng.integers(25, 235), rng.integers(35, 485), rng.integers(1, 13)
        m[r:r + s, c:c + s] = rng.uniform(0.6, 1.0)
    return m


def bench(n: int, repeats: int) -> dict:
    les = lesions(n)
    doc = AnnotationDocument(mpp=MPP)
    doc.add(Annotation(ShapeKind.POLYGON, ((0, 0), (4000, 0), (4000, 4000)), class_name="Tumor"))
    queue = build_queue(les, [], MODEL)
    # review all but the last hotspot first, then time one decision (changed back and forth)
    for h in queue.hotspots[:-1]:
        doc.set_decision(decide(h, Verdict.NOT_TUMOUR, MODEL, "bench"))
    last = build_queue(les, doc.decisions(), MODEL).hotspots[-1]
    decision_s = []
    for k in range(repeats):
        t = time.perf_counter()
        doc.set_decision(decide(last, Verdict.TUMOUR if k % 2 else Verdict.UNSURE, MODEL, "bench"))
        q = build_queue(les, doc.decisions(), MODEL)
        reviewed_label(doc, q)
        decision_s.append(time.perf_counter() - t)
    frame = MapFrame(l0_cell=373.0, mpp=MPP, l0_window=124.0)
    grid = whole_slide_map(min(n, 100))
    analyse_s = []
    for _ in range(max(3, repeats // 4)):
        t = time.perf_counter()
        analyse_map(grid, frame, LesionParams())
        analyse_s.append(time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "slide.svs"
        save_s, base_s = [], []
        plain = AnnotationDocument(mpp=MPP)
        plain.add(Annotation(ShapeKind.POLYGON, ((0, 0), (4000, 0), (4000, 4000)), class_name="Tumor"))
        for _ in range(max(3, repeats // 4)):
            t = time.perf_counter()
            save_document(doc, slide)
            save_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            save_document(plain, slide)
            base_s.append(time.perf_counter() - t)
        save_document(doc, slide)
        size = (slide.with_name(slide.name + ".annotations.geojson")).stat().st_size
    return {"hotspots": n, "decision": Summary.of_seconds(decision_s).to_dict(),
            "analyse_map": Summary.of_seconds(analyse_s).to_dict(),
            "save_with_decisions": Summary.of_seconds(save_s).to_dict(),
            "save_without": Summary.of_seconds(base_s).to_dict(), "autosave_bytes": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [bench(n, args.repeats) for n in (40, 1000)]
    if args.json:
        print(json.dumps({"machine": machine_info(), "results": results}, indent=2))
        return
    rows = []
    for r in results:
        d, a = r["decision"]["median_ms"], r["analyse_map"]["median_ms"]
        s, b = r["save_with_decisions"]["median_ms"], r["save_without"]["median_ms"]
        rows.append((r["hotspots"], d, r["decision"]["p95_ms"], a, f"{100 * d / a:.2f} %", s, b, r["autosave_bytes"]))
    print(table("Review queue: one decision and the autosave (median ms)",
                ("hotspots", "decision ms", "decision p95", "analyse_map ms (baseline)", "decision / analysis",
                 "autosave ms", "autosave w/o decisions ms", "autosave bytes"), rows))
    print(json.dumps(machine_info()))


if __name__ == "__main__":
    main()
