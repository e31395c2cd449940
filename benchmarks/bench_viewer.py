"""Viewer performance benchmarks (issue 2), each against a baseline from the same run.

    .venv/bin/python benchmarks/bench_viewer.py [--slide PATH] [--phantom PATH]
        [--only open,pan,loader,memory] [--minutes M] [--json [FILE]]

open    open to first complete paint, fit and 1:1, vs one raw OpenSlide open + read_region
pan     repaint() time of a scripted 60 frames/s drag, warm and cold cache, vs a blit floor
loader  tile throughput of TileLoader vs raw OpenSlide reads of the same tiles
memory  RSS over --minutes of scripted panning and zooming on the phantom (a child process,
        so that its start RSS is not inflated by the other benchmarks)

The machines are shared and noisy: read the ratios, not the absolute times. Qt runs on the
offscreen platform unless QT_QPA_PLATFORM says otherwise. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401 - puts the repository on sys.path first
from _common import code_fingerprint, machine_info, qt_app, table
from _slides import DEFAULT_PHANTOM, DEFAULT_SLIDE, BenchSlide, ensure_phantom

BENCHES = ("open", "pan", "loader", "memory")
OPEN_GOAL_MS = 150.0
OPEN_GOAL_RATIO = 3.0
PAN_GOAL_P95_MS = 4.0
LOADER_GOAL_RATIO = 0.90
MEMORY_SLACK_MIB = 64.0  # fixed overhead allowed above start + cache capacity
MEMORY_SLOPE_MIB_PER_MIN = 1.0  # "no growth": at most this over the second half


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slide", type=Path, default=DEFAULT_SLIDE, help="the real slide (default: %(default)s)")
    p.add_argument("--phantom", type=Path, default=DEFAULT_PHANTOM,
                   help="the 40k x 40k phantom, written with write_phantom when missing (default: %(default)s)")
    p.add_argument("--standin", action="store_true",
                   help="if the phantom generator is unavailable, benchmark a tifffile stand-in instead")
    p.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of: " + ", ".join(BENCHES))
    p.add_argument("--minutes", type=float, default=10.0, help="memory benchmark duration (default: %(default)s)")
    p.add_argument("--cache-mb", type=int, default=256, help="tile cache for the memory benchmark (default: %(default)s)")
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS sampling period (default: %(default)s)")
    p.add_argument("--runs", type=int, default=7, help="open runs per view (default: %(default)s)")
    p.add_argument("--frames", type=int, default=180, help="frames per scripted drag (default: %(default)s)")
    p.add_argument("--pan-rounds", type=int, default=2, help="interleaved rounds per drag scenario (default: %(default)s)")
    p.add_argument("--loader-side", type=int, default=8, help="loader block side in tiles (default: %(default)s)")
    p.add_argument("--loader-reps", type=int, default=5, help="loader repetitions (default: %(default)s)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help="also write JSON (to FILE, or stdout)")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)  # run memory in this process
    args = p.parse_args(argv)
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(args.only) - set(BENCHES)
    if unknown:
        p.error(f"--only: unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(BENCHES)}")
    return args


# -- running ---------------------------------------------------------------------------------------
def run_memory_child(args: argparse.Namespace) -> dict:
    """The memory benchmark in a fresh interpreter; returns its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "memory.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only", "memory", "--memory-child",
               "--phantom", str(args.phantom), "--minutes", str(args.minutes), "--cache-mb", str(args.cache_mb),
               "--sample-s", str(args.sample_s), "--json", str(out)] + (["--standin"] if args.standin else [])
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())["memory"]


def run(args: argparse.Namespace) -> dict:
    import _viewer_loader
    import _viewer_memory
    import _viewer_open
    import _viewer_pan

    app = qt_app()
    slides: list[BenchSlide] = []
    if not args.memory_child:
        slides.append(BenchSlide(args.slide.stem, args.slide, "real"))
    slides.append(ensure_phantom(args.phantom, allow_standin=args.standin))
    report: dict = {"machine": machine_info(), "code": code_fingerprint(), "slides": [s.to_dict() for s in slides], "args": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    t_all = time.perf_counter()
    if "open" in args.only and not args.memory_child:
        first: dict = {}
        report["open"] = [r.to_dict() for s in slides for r in _viewer_open.bench_open(app, s, args.runs, first)]
        report["open_first_run"] = first
        print(f"open: {time.perf_counter() - t_all:.0f} s", file=sys.stderr, flush=True)
    if "pan" in args.only and not args.memory_child:
        report["pan_floor"] = _viewer_pan.bench_blit_floor(app, args.frames).to_dict()
        report["pan"] = [r.to_dict() for s in slides for r in _viewer_pan.bench_pan(app, s, args.frames, args.pan_rounds)]
        print(f"pan: {time.perf_counter() - t_all:.0f} s", file=sys.stderr, flush=True)
    if "loader" in args.only and not args.memory_child:
        report["loader"] = [_viewer_loader.bench_loader(s, args.loader_side, args.loader_reps).to_dict() for s in slides]
        print(f"loader: {time.perf_counter() - t_all:.0f} s", file=sys.stderr, flush=True)
    if "memory" in args.only:
        if args.memory_child:
            report["memory"] = _viewer_memory.bench_memory(
                app, slides[-1], args.minutes, args.cache_mb, args.sample_s, progress=True).to_dict()
        else:
            report["memory"] = run_memory_child(args)
    report["wall_s"] = time.perf_counter() - t_all
    report["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


# -- reporting -------------------------------------------------------------------------------------
def goals(report: dict) -> list[tuple[str, str, str, bool]]:
    """(goal, scope, measured, met) for every goal the report has numbers for."""
    out = []
    for r in report.get("open", []):
        scope = f"{r['slide']}, {r['view']}"
        ms, ratio = r["complete_ms"]["median_ms"], r["ratio_complete_vs_raw"]
        out.append(("open -> complete paint < 150 ms", scope, f"{ms:.0f} ms", ms < OPEN_GOAL_MS))
        out.append(("open -> complete <= 3x raw open+read", scope, f"{ratio:.2f}x", ratio <= OPEN_GOAL_RATIO))
    for r in report.get("pan", []):
        if r["cache"] == "warm" and r["mode"] == "drag":
            p95 = r["frame_ms"]["p95_ms"]
            out.append(("warm drag frame p95 < 4 ms", f"{r['slide']}, {r['zoom']}", f"{p95:.1f} ms", p95 < PAN_GOAL_P95_MS))
    for r in report.get("loader", []):
        for row in r["rows"]:
            if row["variant"].startswith("loader, 2 workers"):
                out.append(("loader >= 90% of raw tiles/s", f"{r['slide']}, {row['variant'].split(', ')[-1]}",
                            f"{100 * row['ratio_vs_raw']:.0f}%", row["ratio_vs_raw"] >= LOADER_GOAL_RATIO))
    if (m := report.get("memory")) is not None:
        grow = m["rss_max_mib"] - m["rss_start_mib"]
        out.append(("memory bounded by cache + fixed overhead", f"{m['slide']}, {m['minutes']:g} min",
                    f"+{grow:.0f} MiB peak over start (cache {m['cache_capacity_mib']:.0f} MiB)",
                    grow <= m["cache_capacity_mib"] + MEMORY_SLACK_MIB))
        slope = m["slope_last_half_mib_per_min"]
        out.append(("memory: no growth (2nd-half slope <= 1 MiB/min)", f"{m['slide']}, {m['minutes']:g} min",
                    f"{slope:+.2f} MiB/min", not math.isnan(slope) and slope <= MEMORY_SLOPE_MIB_PER_MIN))
    return out


def render(report: dict) -> str:
    m = report["machine"]
    parts = [table("Machine", ["", ""], [[k, v] for k, v in m.items()] + [["loadavg_end", report.get("loadavg_end")]])]
    parts.append(table("Code measured (sha256 of the files, first 12 hex)", ["file", "sha256"],
                       [[k, v] for k, v in report["code"].items()]))
    parts.append(table("Slides", ["label", "kind", "path", "vendor", "MiB", "um/px", "levels (w x h)"], [
        [s["label"], s["kind"], s["path"], s["vendor"], s["file_mib"], f"{s['mpp']:.3f}",
         ", ".join(f"{w}x{h}" for w, h in s["level_dimensions"])] for s in report["slides"]]))
    if report.get("open"):
        first = report.get("open_first_run", {})
        rows = [[r["slide"], r["view"], f"L{r['region']['level']} {r['region']['lv_w']}x{r['region']['lv_h']}",
                 r["region"]["tiles"], r["tab_ms"]["median_ms"], r["first_paint_ms"]["median_ms"],
                 r["complete_ms"]["median_ms"], r["complete_ms"]["max_ms"], r["raw_open_read_ms"]["median_ms"],
                 r["raw_read_ms"]["median_ms"], r["thumbnail_ms"]["median_ms"], f"{r['ratio_complete_vs_raw']:.2f}x"]
                for r in report["open"]]
        parts.append(table(
            f"1. Open to first complete paint, 1920x1080 (ms, median of {report['open'][0]['runs']}; "
            f"first run in process: {first.get('ms', math.nan):.0f} ms on {first.get('what', '?')})",
            ["slide", "view", "region", "tiles", "SlideTab()", "1st paint", "complete", "complete max",
             "raw open+read", "raw read", "thumbnail (async)", "complete/raw"], rows))
    if report.get("pan"):
        floor = report["pan_floor"]["frame_ms"]
        cpu = lambda r: r.get("frame_cpu_ms") or {"median_ms": math.nan, "p95_ms": math.nan}  # noqa: E731 - older JSON
        rows = [[r["slide"], r["zoom"], r["cache"], r["mode"], f"L{r['level']} @ {r['scale']:.3f}", r["frames"],
                 r["frame_ms"]["median_ms"], r["frame_ms"]["p95_ms"], r["frame_ms"]["max_ms"],
                 cpu(r)["median_ms"], cpu(r)["p95_ms"],
                 r["plan_ms"]["median_ms"], f"{r['frame_ms']['p95_ms'] / floor['p95_ms']:.1f}x",
                 r["incomplete_frames"], r["extra_paints"], r["tiles_loaded"], r["settle_ms"]] for r in report["pan"]]
        rows.append(["blit floor", "-", "-", "repaint", "one 1920x1080 RGB32 image", floor["n"], floor["median_ms"],
                     floor["p95_ms"], floor["max_ms"], cpu(report["pan_floor"])["median_ms"],
                     cpu(report["pan_floor"])["p95_ms"], "-", "1.0x", "-", "-", "-", "-"])
        unpainted = sum(r["unpainted_frames"] for r in report["pan"])
        parts.append(table(
            f"2. Frame time of a 60 frames/s drag, 40 px/frame, {report['args']['pan_rounds']} rounds pooled "
            "(ms from input to backing store, wall clock; cpu = process CPU time"
            + (f"; WARNING: {unpainted} frames painted nothing inside the timed call" if unpainted else "") + ")",
            ["slide", "zoom", "cache", "mode", "level @ scale", "frames", "median", "p95", "max", "cpu median",
             "cpu p95", "plan median",
             "p95/floor", "incomplete", "extra paints", "tiles read", "settle ms"], rows))
    for r in report.get("loader", []):
        by_name = {row["variant"]: row for row in r["rows"]}
        raw = {1: by_name["raw OpenSlide, 1 thread"], 2: by_name["raw OpenSlide, 2 threads"]}
        rows = []
        for row in r["rows"]:
            threads = 1 if ("1 thread" in row["variant"] or "1 worker" in row["variant"]) else 2
            rows.append([row["variant"], row["tiles"], row["median_s"] * 1e3, row["tiles_per_s"],
                         f"{100 * row['ratio_vs_raw']:.0f}%", f"{100 * row['tiles_per_s'] / raw[threads]['tiles_per_s']:.0f}%"])
        parts.append(table(f"3. Loader throughput, {r['slide']}, level {r['level']}, {r['block']} "
                           f"(median of {r['reps']})",
                           ["variant", "tiles", "ms", "tiles/s", "vs raw 1 thread", "vs raw, same threads"], rows))
    if (mem := report.get("memory")) is not None:
        rows = [[k, v] for k, v in (
            ("slide", mem["slide"]), ("minutes", mem["minutes"]), ("cache capacity MiB", mem["cache_capacity_mib"]),
            ("RSS before open MiB", mem["rss_before_open_mib"]), ("RSS at start MiB", mem["rss_start_mib"]),
            ("RSS after warm-up (1/4) MiB", mem["rss_warm_mib"]), ("RSS max MiB", mem["rss_max_mib"]),
            ("RSS at end MiB", mem["rss_end_mib"]),
            ("RSS slope, 2nd half, MiB/min", f"{mem['slope_last_half_mib_per_min']:+.2f}"),
            ("peak RSS - start - cache capacity MiB", mem["excess_mib"]),
            ("cache size_bytes at end MiB", mem["cache_end_mib"]), ("cache max MiB", mem["cache_max_mib"]),
            ("frames", mem["frames"]), ("frame p95 ms", mem["frame_ms"]["p95_ms"]),
            ("tiles read", mem["tiles_loaded"]), ("cache evictions", mem["evictions"]))]
        parts.append(table("4. Memory under scripted panning and zooming", ["", ""], rows))
    parts.append(table("Goals", ["goal", "scope", "measured", "met"],
                       [[g, s, v, "met" if ok else "NOT met"] for g, s, v, ok in goals(report)]))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    report["goals"] = [{"goal": g, "scope": s, "measured": v, "met": ok} for g, s, v, ok in goals(report)]
    if not args.memory_child:
        print(render(report))
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
