"""``histoviewer analyze`` end to end against a plain PyTorch loop and the read+model bound
(issue 15, "cut the fixed costs"), all measured in one run, rounds interleaved.

The CNN runs on onnxruntime on the CPU (``core/models/cnn_ort.py``; no torch import): the
bound is given both as the issue defines it (decode + the torch model alone) and with the
engine ``analyze`` now uses (decode + the onnxruntime model alone), and ``analyze`` with
``HISTOVIEWER_INFERENCE_ENGINE=torch`` (as before the engine) runs in the same rounds.

    python benchmarks/bench_fixed_costs.py [--slide PATH] [--rounds 5] [--before TREE]
                                           [--big PATH] [--json OUT.json]

Per round, in this order:

- analyze: ``python -m histoviewer analyze SLIDE --out TMP`` in a fresh process: wall time
  from the command's start to its exit (start-up, model load, classifying, every output).
  The default CNN loads on onnxruntime in this process (a torch model: in a child process,
  ``core.inference.model_process``).
- analyze, torch engine (``--no-torch-analyze`` leaves it out): the same command with
  ``HISTOVIEWER_INFERENCE_ENGINE=torch`` (the child imports torch, as before onnxruntime).
- analyze, model in a child (``--no-inproc`` leaves it out): the same with
  ``HISTOVIEWER_MODEL_PROCESS=1``, the model forced into a child process
  (``core.models.model_server``) although it loads without torch: what the child costs
  or buys now (``analyze`` starts one only when loading the model imports torch). The
  ``analyze_inproc`` keys keep their name from earlier runs, where they were the reverse.
- before (``--before TREE``, a checkout of the code before the change, e.g.
  ``git archive 3dde403 | tar -x -C /tmp/base``): the same command from that tree.
- plain loop: ``benchmarks/_plain_loop.py`` in a fresh process (OpenSlide reads level 2 one
  patch at a time, Pillow resizes, batches of 256 through the same model; the same tissue
  patches; start-up included).
- warm: ``analyze_slide`` in this process with the model already loaded (what each slide
  after the first costs in a case of several nodes, ``analyze`` of a folder or the viewer's
  "Analyse all"), every output written: with the model loaded here (``warm``) and with the
  model in a child process (``warm_child``, as ``analyze`` of several slides runs it). One
  untimed slide first for each.
- bound, in this process: every level-2 tile the tissue patches touch decoded once
  (tifffile/imagecodecs, as analyze reads them), plus the model alone on as many patches
  (batches of 512): with torch's default threads, and (``model_best``) the faster of that
  and two threads of one torch thread each. ``bound`` = decode + default model, as the issue
  defines it; ``strict bound`` = decode + best model. The same for the onnxruntime model
  (``model_ort_default``: one call thread of one intra-op thread per core; ``model_ort_2x1``):
  ``engine bound`` = decode + the onnxruntime model, ``strict engine bound`` with its best.

- floor (``--no-floor`` leaves it out): ``benchmarks/_analyze_floor.py`` in a fresh process,
  the same ``analyze`` command with the classification pass replaced by copying this round's
  analyze results into the grid (no reads, no resizing, no model, no descriptors): interpreter
  start, imports, model load, slide open, tissue, thumbnail and every output. Split at the
  moment classification would start into the start-up floor and the outputs floor (which
  includes waiting for the heatmap's thumbnail, made on a thread from the start). Also
  ``python -c "import sys"`` alone (``interpreter``).
- phases of each ``analyze`` run, from its ``summary.json`` timing: before ``analyze_slide``
  (interpreter, imports, argument checks: the process's wall time less ``total_s``), tissue,
  classifying (wall), writing, lesions.

Medians over the rounds; the goal: analyze <= 1.5 x bound and plain loop >= 2 x analyze;
the warm times are reported against the same bound. Also printed: ``python -c "import torch"``
and ``python -c "import onnxruntime"`` alone (fresh processes, timed each round): the floor
under any cold process that imports them.
The outputs of analyze and before are compared (node label, lesions, maps). ``--big``: one
run each of analyze, analyze with the torch engine and before on a large slide (the CAMELYON-size phantom) at the end.
The slide is made with ``histoviewer phantom`` when missing (40,000 x 40,000 px, ~40 s).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import machine_info
from histoviewer.core.grid_geometry import GridGeometry
from histoviewer.core.inference.analyze import AnalyzeOptions, analyze_slide
from histoviewer.core.inference.model_process import start_model_process
from histoviewer.core.inference.regions import choose_level
from histoviewer.core.inference.tiff_regions import TiffRegionSource
from histoviewer.core.inference.tissue import grid_tissue
from histoviewer.core.models.model_threads import set_model_threads
from histoviewer.core.models.registry import open_model
from histoviewer.core.slide import open_slide

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def ensure_slide(path: Path) -> Path:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing phantom {path} (once) ...", flush=True)
        subprocess.run(
            [
                PY,
                "-m",
                "histoviewer",
                "phantom",
                "--width",
                "40000",
                "--height",
                "40000",
                str(path),
            ],
            check=True,
            env=_env(REPO),
            stdout=subprocess.DEVNULL,
        )
    return path


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CPU: dict[
    str, list[float]
] = {}  # CPU seconds (user + system) of each child, by what it ran


def run_cli(tree: Path, slide: Path, out: Path, label: str, model_process: str | None = None,
            engine: str | None = None) -> float:
    """Wall seconds of ``histoviewer analyze`` from ``tree`` in a fresh process
    (``model_process``: ``HISTOVIEWER_MODEL_PROCESS``, ``engine``: ``HISTOVIEWER_INFERENCE_ENGINE``;
    None: unset, the default)."""
    shutil.rmtree(out, ignore_errors=True)
    cpu0, t0 = _child_cpu(), time.perf_counter()
    result = subprocess.run(
        [PY, "-m", "histoviewer", "analyze", str(slide), "--out", str(out)],
        env={**{k: v for k, v in _env(tree).items()
                if k not in ("HISTOVIEWER_MODEL_PROCESS", "HISTOVIEWER_INFERENCE_ENGINE")},
             **({"HISTOVIEWER_MODEL_PROCESS": model_process} if model_process else {}),
             **({"HISTOVIEWER_INFERENCE_ENGINE": engine} if engine else {})},
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    CPU.setdefault(label, []).append(_child_cpu() - cpu0)
    if result.returncode not in (0, 3):
        raise SystemExit(
            f"analyze from {tree} failed ({result.returncode}): {result.stderr[-2000:]}"
        )
    return seconds


def run_floor(tree: Path, slide: Path, out: Path, reference: Path) -> tuple[float, float, float]:
    """(wall, start-up, outputs) seconds of ``_analyze_floor.py`` from ``tree`` in a fresh
    process: ``analyze`` without classification, the grid filled from ``reference`` (an
    analyze output folder of this slide)."""
    shutil.rmtree(out, ignore_errors=True)
    marks_path = out.with_suffix(".marks.json")
    cpu0, t0_epoch, t0 = _child_cpu(), time.time(), time.perf_counter()
    result = subprocess.run(
        [PY, str(REPO / "benchmarks" / "_analyze_floor.py"), str(slide), str(out), str(reference), str(marks_path)],
        env=_env(tree), cwd=tree, capture_output=True, text=True, check=False,
    )
    seconds = time.perf_counter() - t0
    CPU.setdefault("floor", []).append(_child_cpu() - cpu0)
    if result.returncode not in (0, 3):
        raise SystemExit(f"the floor run failed ({result.returncode}): {result.stderr[-2000:]}")
    marks = json.loads(marks_path.read_text())
    return seconds, marks["classify_start"] - t0_epoch, t0_epoch + seconds - marks["classify_end"]


PHASES = ("outside_analyze_slide", "tissue_s", "classify_wall_s", "write_s", "lesions_s", "rest_of_analyze_slide")


def analyze_phases(out: Path, wall_s: float) -> dict[str, float]:
    """Where one ``analyze`` process's wall time went, from its ``summary.json`` timing:
    outside ``analyze_slide`` (interpreter, imports, the model child decision and argument
    checks before it; stages.csv, the printout and exit after it), its timed phases, and the
    rest of it (slide open, the learned label, summary.json)."""
    timing = json.loads((out / "summary.json").read_text())["timing"]
    own = {k: timing[k] for k in ("tissue_s", "classify_wall_s", "write_s", "lesions_s")}
    return {"outside_analyze_slide": wall_s - timing["total_s"], **own,
            "rest_of_analyze_slide": timing["total_s"] - sum(own.values()),
            "read_decode_s": timing["read_decode_s"], "resize_cut_s": timing["resize_cut_s"],
            "model_s_summed": timing["model_s"], "wait_for_reads_s": timing["wait_for_reads_s"]}


def run_plain(slide: Path, out: Path) -> float:
    cpu0, t0 = _child_cpu(), time.perf_counter()
    subprocess.run(
        [PY, str(REPO / "benchmarks" / "_plain_loop.py"), str(slide), str(out)],
        env=_env(REPO),
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - t0
    CPU.setdefault("plain", []).append(_child_cpu() - cpu0)
    return seconds


def run_import(module: str = "torch") -> float:
    """Wall seconds of ``python -c "import MODULE"`` in a fresh process."""
    t0 = time.perf_counter()
    subprocess.run([PY, "-c", f"import {module}"], check=True)
    return time.perf_counter() - t0


def run_warm(slide: Path, out: Path, model) -> float:
    """Wall seconds of ``analyze_slide`` here, ``model`` loaded (every output written)."""
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    analyze_slide(slide, out, model, AnalyzeOptions())
    return time.perf_counter() - t0


def tissue_tiles(
    slide: Path, model
) -> tuple[TiffRegionSource, object, list[int], np.ndarray]:
    """(source, page, tile indices of level 2 the tissue patches touch, tissue cells)."""
    reader = open_slide(slide)
    g = GridGeometry.for_slide(
        reader.info.dimensions, reader.info.mpp, model.input.mpp, model.input.patch_px
    )
    cells = np.flatnonzero(grid_tissue(reader, g).reshape(-1))
    level = choose_level(reader, g)
    source = TiffRegionSource.open(slide, reader)
    page = source._pages[level]
    ds = reader.info.level_downsamples[level]
    th, tw = page.tilelength, page.tilewidth
    across = -(-page.shape[1] // tw)
    x, y = g.cell_l0_xy(cells)
    tiles = set()
    for x0, y0 in zip(x / ds, y / ds):
        x1, y1 = x0 + g.l0_patch / ds, y0 + g.l0_patch / ds
        for ty in range(int(y0) // th, int(y1) // th + 1):
            for tx in range(int(x0) // tw, int(x1) // tw + 1):
                tiles.add(ty * across + tx)
    return source, page, sorted(tiles), cells


def decode_once(source, page, tiles) -> float:
    t0 = time.perf_counter()
    for index in tiles:
        source._tile(page, index)
    return time.perf_counter() - t0


def model_alone(model, n: int, threads: int) -> float:
    """Seconds for the model alone on ``n`` patches, batches of 512: one thread with the
    engine's default threads, or ``threads`` threads of one intra-op thread each."""
    p = model.input.patch_px
    batch = np.random.default_rng(0).integers(0, 256, (512, p, p, 3), dtype=np.uint8)
    sizes = [min(512, n - s) for s in range(0, n, 512)]
    if threads == 1:
        t0 = time.perf_counter()
        for size in sizes:
            model.predict_proba(batch[:size])
        return time.perf_counter() - t0
    lock = threading.Lock()
    todo = list(sizes)

    def work() -> None:
        set_model_threads(1)
        while True:
            with lock:
                if not todo:
                    return
                size = todo.pop()
            model.predict_proba(batch[:size])

    t0 = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - t0


def compare_outputs(a: Path, b: Path) -> dict:
    import tifffile

    sa, sb = (
        json.loads((a / "summary.json").read_text()),
        json.loads((b / "summary.json").read_text()),
    )
    ma, mb = (
        tifffile.imread(a / "probability.tiff"),
        tifffile.imread(b / "probability.tiff"),
    )
    return {
        "node_label_same": sa["node_label"] == sb["node_label"],
        "lesions_same": [x["diameter_mm"] for x in sa["lesions"]]
        == [x["diameter_mm"] for x in sb["lesions"]],
        "map_max_abs_diff": float(np.nanmax(np.abs(ma - mb)))
        if ma.shape == mb.shape
        else None,
        "map_allclose": bool(
            ma.shape == mb.shape and np.allclose(ma, mb, atol=1e-5, equal_nan=True)
        ),
        "geojson_same": (a / "lesions.geojson").read_text()
        == (b / "lesions.geojson").read_text(),
    }


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--slide",
        type=Path,
        default=Path("/tmp/histoviewer-bench/phantom-40k-40k.tiff"),
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of the code before the change",
    )
    ap.add_argument(
        "--big",
        type=Path,
        default=None,
        help="a large slide: one analyze (and before) run each",
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-inproc", action="store_true", help="leave out analyze with the model in-process")
    ap.add_argument("--no-warm", action="store_true", help="leave out the warm per-slide runs")
    ap.add_argument("--no-floor", action="store_true", help="leave out the floor (analyze without classifying)")
    ap.add_argument("--no-torch-analyze", action="store_true",
                    help="leave out analyze with HISTOVIEWER_INFERENCE_ENGINE=torch")
    args = ap.parse_args()
    slide = ensure_slide(args.slide)
    model = open_model("cnn", device="cpu")  # the engine analyze uses (onnxruntime on the CPU)
    torch_model = open_model("cnn", device="cpu", engine="torch")
    print(f"model engines: analyze's {type(model).__name__}, the issue's bound {type(torch_model).__name__}",
          flush=True)
    source, page, tiles, cells = tissue_tiles(slide, model)
    times: dict[str, list[float]] = {
        k: []
        for k in ("analyze", "analyze_torch", "analyze_inproc", "before", "plain", "warm", "warm_child",
                  "torch_import", "ort_import", "decode", "model_default", "model_2x1", "model_ort_default",
                  "model_ort_2x1", "floor", "floor_startup", "floor_outputs", "interpreter")
    }
    phases: dict[str, list[dict[str, float]]] = {"analyze": [], "before": []}
    tmp = Path(tempfile.mkdtemp(prefix="fast-bench-"))
    child = None
    try:
        if not args.no_warm:  # the first slide of a run is not a warm one
            run_warm(slide, tmp / "warm", model)
            child = start_model_process("cnn", device="cpu")
            run_warm(slide, tmp / "warm-child", child)
        for r in range(args.rounds):
            times["analyze"].append(run_cli(REPO, slide, tmp / "new", "analyze"))
            phases["analyze"].append(analyze_phases(tmp / "new" / slide.stem, times["analyze"][-1]))
            if not args.no_floor:  # this round's results copied in: no reads, no model
                wall, startup, outputs = run_floor(REPO, slide, tmp / "floor", tmp / "new" / slide.stem)
                times["floor"].append(wall)
                times["floor_startup"].append(startup)
                times["floor_outputs"].append(outputs)
                times["interpreter"].append(run_import("sys"))
            if not args.no_torch_analyze:
                times["analyze_torch"].append(run_cli(REPO, slide, tmp / "torch", "analyze_torch", engine="torch"))
            if not args.no_inproc:
                times["analyze_inproc"].append(
                    run_cli(REPO, slide, tmp / "inproc", "analyze_inproc", model_process="1")
                )
            if args.before:
                times["before"].append(
                    run_cli(args.before, slide, tmp / "old", "before")
                )
                phases["before"].append(analyze_phases(tmp / "old" / slide.stem, times["before"][-1]))
            times["plain"].append(run_plain(slide, tmp / "plain.npy"))
            if not args.no_warm:
                times["warm"].append(run_warm(slide, tmp / "warm", model))
                times["warm_child"].append(run_warm(slide, tmp / "warm-child", child))
            times["torch_import"].append(run_import("torch"))
            times["ort_import"].append(run_import("onnxruntime"))
            times["decode"].append(decode_once(source, page, tiles))
            times["model_default"].append(model_alone(torch_model, len(cells), 1))
            times["model_2x1"].append(model_alone(torch_model, len(cells), 2))
            times["model_ort_default"].append(model_alone(model, len(cells), 1))
            times["model_ort_2x1"].append(model_alone(model, len(cells), 2))
            print(
                f"round {r + 1}: "
                + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v),
                flush=True,
            )
        m = {k: med(v) for k, v in times.items()}
        cpu = {k: med(v) for k, v in CPU.items()}
        best_model = min(m["model_default"], m["model_2x1"])
        best_ort = min(m["model_ort_default"], m["model_ort_2x1"])
        out = {
            "slide": str(slide),
            "tissue_patches": len(cells),
            "level2_tiles": len(tiles),
            "machine": machine_info(),
            "rounds": args.rounds,
            "seconds": times,
            "median_s": m,
            "bound_s": m["decode"] + m["model_default"],
            "strict_bound_s": m["decode"] + best_model,
            "engine_bound_s": m["decode"] + m["model_ort_default"],
            "strict_engine_bound_s": m["decode"] + best_ort,
        }
        out["phases_median_s"] = {k: {name: med([ph[name] for ph in v]) for name in v[0]}
                                  for k, v in phases.items() if v}
        out["budget_s"] = 1.5 * out["bound_s"]  # the goal: analyze within 1.5x the bound
        if not args.no_floor:
            out["floor_over_budget"] = m["floor"] / out["budget_s"]
            out["floor_outputs_vs_analyze"] = compare_outputs(tmp / "floor" / slide.stem, tmp / "new" / slide.stem)
        out["analyze_over_engine_bound"] = m["analyze"] / out["engine_bound_s"]
        out["analyze_over_strict_engine_bound"] = m["analyze"] / out["strict_engine_bound_s"]
        out["ort_import_over_engine_bound"] = m["ort_import"] / out["engine_bound_s"]
        if not args.no_torch_analyze:
            out["analyze_torch_over_analyze"] = m["analyze_torch"] / m["analyze"]
            out["plain_over_analyze_torch"] = m["plain"] / m["analyze_torch"]
            out["outputs_torch_vs_onnxruntime"] = compare_outputs(
                tmp / "torch" / slide.stem, tmp / "new" / slide.stem
            )
        out["analyze_over_bound"] = m["analyze"] / out["bound_s"]
        out["analyze_over_strict_bound"] = m["analyze"] / out["strict_bound_s"]
        out["plain_over_analyze"] = m["plain"] / m["analyze"]
        out["plain_wins_rounds"] = sum(
            p < a for p, a in zip(times["plain"], times["analyze"])
        )
        out["torch_import_over_bound"] = m["torch_import"] / out["bound_s"]
        if not args.no_inproc:
            out["analyze_inproc_over_analyze"] = m["analyze_inproc"] / m["analyze"]
            out["outputs_inproc_vs_child"] = compare_outputs(
                tmp / "inproc" / slide.stem, tmp / "new" / slide.stem
            )
        if not args.no_warm:
            out["warm_over_bound"] = m["warm"] / out["bound_s"]
            out["warm_child_over_bound"] = m["warm_child"] / out["bound_s"]
            out["outputs_warm_vs_cold"] = compare_outputs(tmp / "warm", tmp / "new" / slide.stem)
            out["outputs_warm_child_vs_cold"] = compare_outputs(tmp / "warm-child", tmp / "new" / slide.stem)
        if args.before:
            out["before_over_analyze"] = m["before"] / m["analyze"]
            out["outputs_vs_before"] = compare_outputs(
                tmp / "old" / slide.stem, tmp / "new" / slide.stem
            )
        probs = np.load(tmp / "plain.npy")
        import tifffile

        ours = tifffile.imread(tmp / "new" / slide.stem / "probability.tiff").reshape(
            -1
        )[cells]
        out["plain_vs_analyze_probability"] = {
            "mean_abs_diff": float(np.mean(np.abs(probs - ours))),
            "same_side_of_0.5": float(np.mean((probs >= 0.5) == (ours >= 0.5))),
        }
        if args.big:
            out["big"] = {
                "slide": str(args.big),
                "analyze_s": run_cli(REPO, args.big, tmp / "big-new", "big"),
            }
            if not args.no_torch_analyze:  # the same slide with the torch engine, right after
                out["big"]["analyze_torch_s"] = run_cli(REPO, args.big, tmp / "big-torch", "big-torch",
                                                        engine="torch")
            if args.before:
                out["big"]["before_s"] = run_cli(
                    args.before, args.big, tmp / "big-old", "big-before"
                )
                out["big"]["outputs_vs_before"] = compare_outputs(
                    tmp / "big-old" / args.big.stem, tmp / "big-new" / args.big.stem
                )
            summary = json.loads(
                (tmp / "big-new" / args.big.stem / "summary.json").read_text()
            )
            out["big"]["timing"] = summary["timing"]
            out["big"]["tissue_patches"] = summary["tissue_patches"]
    finally:
        if child is not None:
            child.close()
        torch_model.close()
        shutil.rmtree(tmp, ignore_errors=True)
        source.close()
    print(
        f"median of {args.rounds} rounds on {slide.name} ({len(cells)} tissue patches, {len(tiles)} level-2 tiles):"
    )
    print(
        f"  analyze {m['analyze']:.2f} s"
        + (
            f"   before {m['before']:.2f} s (x{out['before_over_analyze']:.2f})"
            if args.before
            else ""
        )
    )
    if not args.no_inproc:
        print(
            f"  analyze with the model forced into a child process {m['analyze_inproc']:.2f} s "
            f"(x{out['analyze_inproc_over_analyze']:.2f} analyze's time)"
        )
    print(
        f"  plain loop {m['plain']:.2f} s: x{out['plain_over_analyze']:.2f} analyze's time "
        f"(goal >= 2; the plain loop won {out['plain_wins_rounds']} of {args.rounds} rounds)"
    )
    if not args.no_torch_analyze:
        print(
            f"  analyze with the torch engine {m['analyze_torch']:.2f} s (x{out['analyze_torch_over_analyze']:.2f} "
            f"analyze's time; plain / analyze-torch = {out['plain_over_analyze_torch']:.2f}); outputs torch vs "
            f"onnxruntime: {out['outputs_torch_vs_onnxruntime']}"
        )
    print(
        f"  bound as the issue defines it: decode {m['decode']:.2f} s + torch model {m['model_default']:.2f} s "
        f"= {out['bound_s']:.2f} s; analyze / bound = {out['analyze_over_bound']:.2f} (goal <= 1.5)"
    )
    print(
        f"  bound with the engine analyze uses: decode {m['decode']:.2f} s + onnxruntime model "
        f"{m['model_ort_default']:.2f} s = {out['engine_bound_s']:.2f} s; analyze / engine bound = "
        f"{out['analyze_over_engine_bound']:.2f} (goal <= 1.5); strict (onnxruntime 2 threads of 1: "
        f"{m['model_ort_2x1']:.2f} s) {out['strict_engine_bound_s']:.2f} s, "
        f"analyze / strict engine bound = {out['analyze_over_strict_engine_bound']:.2f}"
    )
    print(
        f"  strict bound (model alone on 2 threads of 1 torch thread: {m['model_2x1']:.2f} s): "
        f"{out['strict_bound_s']:.2f} s; analyze / strict bound = {out['analyze_over_strict_bound']:.2f}"
    )
    print(
        f"  python -c 'import torch' alone: {m['torch_import']:.2f} s = "
        f"{out['torch_import_over_bound']:.2f} x the bound (a cold process importing torch cannot "
        "be within 1.5x the bound when the import alone is above it)"
    )
    print(
        f"  python -c 'import onnxruntime' alone: {m['ort_import']:.2f} s = "
        f"{out['ort_import_over_engine_bound']:.2f} x the engine bound"
    )
    if not args.no_warm:
        print(
            f"  warm, per slide after the first (model loaded here): {m['warm']:.2f} s, "
            f"{out['warm_over_bound']:.2f} x bound; model in a child process: {m['warm_child']:.2f} s, "
            f"{out['warm_child_over_bound']:.2f} x bound (goal <= 1.5)"
        )
        print(f"  warm outputs vs cold: {out['outputs_warm_vs_cold']}; "
              f"warm (child) vs cold: {out['outputs_warm_child_vs_cold']}")
    if not args.no_inproc:
        print(f"  outputs, model in a child vs analyze's default: {out['outputs_inproc_vs_child']}")
    print(
        "  CPU seconds (user + system, median): "
        + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
    )
    if args.before:
        print(f"  outputs vs before: {out['outputs_vs_before']}")
    print(
        f"  plain loop vs analyze probabilities: {out['plain_vs_analyze_probability']}"
    )
    if args.big:
        print(f"  big slide {args.big.name}: {out['big']}")
    print(f"  phases of analyze (median seconds; {', '.join(PHASES)}; the others are CPU "
          "seconds of the reader, the model summed over its threads, and the model's wait):")
    for k, v in out["phases_median_s"].items():
        print(f"    {k}: " + ", ".join(f"{name} {sec:.3f}" for name, sec in v.items()))
    if not args.no_floor:
        print(
            f"  floor, analyze without classifying: {m['floor']:.2f} s wall = start-up {m['floor_startup']:.2f} s "
            f"(interpreter, imports, model load, slide open, tissue; the interpreter alone {m['interpreter']:.2f} s) "
            f"+ outputs {m['floor_outputs']:.2f} s (every file, the thumbnail awaited); outputs identical to "
            f"analyze's: {out['floor_outputs_vs_analyze']}"
        )
        print(
            f"  budget 1.5 x bound = {out['budget_s']:.2f} s; the floor alone is {out['floor_over_budget']:.2f} of it, "
            f"leaving {out['budget_s'] - m['floor']:.2f} s for classifying, against the onnxruntime model alone "
            f"{m['model_ort_default']:.2f} s + decode {m['decode']:.2f} s"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
