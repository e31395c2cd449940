"""Where one cold ``histoviewer analyze`` spends its time: wall and thread CPU per phase.

    python benchmarks/trace_analyze.py SLIDE OUT_DIR [--json TRACE.json]

Runs ``histoviewer analyze SLIDE --out OUT_DIR`` in this process with the functions of each
phase (``TARGETS``) wrapped as their modules load (an import hook), so nothing is imported
earlier than the command imports it. Each call records its thread, start, end and the
thread's CPU seconds; top-level imports are timed too (this hook adds a little to each).
Prints, per thread and phase: first start and last end (seconds after the process started),
summed wall and CPU seconds and the number of calls; then the imports of 20 ms or more.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib.abc
import json
import os
import sys
import threading
import time
from pathlib import Path

T0 = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGETS = {
    "histoviewer.core.inference.tissue": ["grid_tissue"],
    "histoviewer.core.inference.analyze": ["_heatmap_backdrop", "analyze_slide"],
    "histoviewer.core.inference.regions": [
        "RegionCutter.read_timed",
        "RegionCutter._resize_rows",
    ],
    "histoviewer.core.inference.outputs": [
        "write_probability_map",
        "write_heatmap_png",
        "write_domain_map",
        "heatmap_base",
    ],
    "histoviewer.core.analysis.node_label": ["analyse_map"],
    "histoviewer.core.models.domain": ["judge_slide", "tissue_descriptor"],
    "histoviewer.core.analysis.lesion_io": ["write_lesions_geojson"],
    "histoviewer.core.analysis.learned_label": ["with_learned_label"],
    "histoviewer.core.models.model_file": ["load_model"],
    "histoviewer.core.models.cnn_ort": ["OrtCnnClassifier._logits_of_prepared"],
    "histoviewer.core.models.logit_classifier": ["LogitClassifier.classify"],
    "histoviewer.core.slide": ["open_slide"],
    "histoviewer.core.inference.tiff_regions": ["TiffRegionSource.read_region"],
    "histoviewer.core.jobs.analysis": ["analyze_case"],
    "histoviewer.core.inference.pipeline": ["classify_cells"],
    "histoviewer.core.inference.blank": ["blank_patches"],
}
EVENTS: list[tuple[str, str, float, float, float]] = []
IMPORTS: list[tuple[str, str, float, float]] = []


def _since_start() -> float:
    return time.perf_counter() - T0


def _wrap(name, fn):
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        start, cpu = _since_start(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            EVENTS.append(
                (
                    threading.current_thread().name,
                    name,
                    start,
                    _since_start(),
                    time.thread_time() - cpu,
                )
            )

    return timed


def _patch(module) -> None:
    for qualname in TARGETS.get(module.__name__, []):
        owner, attr = module, qualname.split(".")
        for part in attr[:-1]:
            owner = getattr(owner, part)
        setattr(owner, attr[-1], _wrap(qualname, getattr(owner, attr[-1])))


class _TimingFinder(importlib.abc.MetaPathFinder):
    """Times each module's execution and wraps ``TARGETS`` once a module has run."""

    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module, _run=run):
            start = _since_start()
            _run(module)
            IMPORTS.append(
                (threading.current_thread().name, name, start, _since_start())
            )
            _patch(module)

        loader.exec_module = exec_module
        return spec


def report(trace: dict) -> None:
    print(
        f"process: started {-trace['process_start']:.2f} s before the tracer; ended at {trace['end']:.2f} s; "
        f"CPU {trace['cpu']:.2f} s"
    )
    agg: dict[tuple[str, str], list[float]] = collections.defaultdict(
        lambda: [0, 0.0, 1e9, 0.0, 0.0]
    )
    for thread, name, start, end, cpu in trace["events"]:
        row = agg[(thread.rsplit("_", 1)[0], name)]
        row[0] += 1
        row[1] += end - start
        row[2] = min(row[2], start)
        row[3] = max(row[3], end)
        row[4] += cpu
    print(f"{'from-to (s)':>13}  {'wall':>6} {'CPU':>6}  calls  thread / phase")
    for (thread, name), (calls, wall, first, last, cpu) in sorted(
        agg.items(), key=lambda kv: kv[1][2]
    ):
        print(
            f"{first:6.2f}-{last:6.2f}  {wall:6.3f} {cpu:6.3f}  {calls:5d}  {thread} / {name}"
        )
    top: list[tuple[str, str, float, float]] = []
    for thread, name, start, end in sorted(trace["imports"], key=lambda x: x[2]):
        if not any(t == thread and s <= start and end <= e for t, _, s, e in top):
            top.append((thread, name, start, end))
    print("top-level imports of 20 ms or more (s after start, seconds):")
    for thread, name, start, end in top:
        if end - start >= 0.02:
            print(f"  {start:6.2f}-{end:6.2f} {end - start:6.3f}  {thread}: {name}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("slide")
    ap.add_argument("out")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with open(
        "/proc/self/stat"
    ) as fh:  # Linux: when this process started, before the tracer
        started_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime") as fh:
        uptime = float(fh.read().split()[0])
    process_start = (
        started_ticks / os.sysconf("SC_CLK_TCK") - uptime + (time.perf_counter() - T0)
    )
    sys.meta_path.insert(0, _TimingFinder())
    from histoviewer.cli import main as cli_main

    rc = cli_main(["analyze", args.slide, "--out", args.out])
    trace = {
        "process_start": process_start,
        "end": _since_start(),
        "cpu": time.process_time(),
        "events": EVENTS,
        "imports": IMPORTS,
        "rc": rc,
    }
    report(trace)
    if args.json:
        args.json.write_text(json.dumps(trace))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
