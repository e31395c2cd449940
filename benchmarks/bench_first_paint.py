"""Cold start to the first paint of the demo slide: the packaged application against the source tree.

    python benchmarks/bench_first_paint.py --bundle build/stage/histoviewer-0.1.0-linux-x86_64 --repeats 5

Each run is a fresh process started with a clean environment (a temporary HOME, so the AI
overlay has its default settings: on, the default model) running ``histoviewer demo`` with
``HISTOVIEWER_SMOKE_TEST`` set: it exits right after the first complete, non-blank frame. The
time is the wall clock from the process start to its exit (so it includes interpreter start,
imports, opening the slide, the first frame and the shutdown), and the in-app time from the
window's first show to that frame. Runs alternate between the two (source, bundle, source,
...) so that machine load falls on both alike; the demo slide is made once beforehand, by the
bundle. The page cache is not dropped (that needs root): the first run of each is the coldest,
reported apart.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAINT = re.compile(r"first complete frame painted after (\d+) ms")


def run_once(
    command: list[str], home: Path, extra_env: dict[str, str]
) -> tuple[float, int]:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
        "HISTOVIEWER_CONFIG_DIR": str(home / "config"),
        "HISTOVIEWER_SMOKE_TEST": "300",
        **extra_env,
    }
    start = time.perf_counter()
    result = subprocess.run(
        command,
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    wall_s = time.perf_counter() - start
    match = PAINT.search(result.stderr)
    if result.returncode != 0 or not match:
        raise SystemExit(
            f"{command[0]} failed ({result.returncode}):\n{result.stderr[-2000:]}"
        )
    return wall_s, int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bundle", type=Path, required=True, help="the extracted archive folder"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--demo-slide",
        type=Path,
        default=None,
        help="an existing demo-phantom.tiff to copy instead of making one with the bundle",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hv-first-paint-") as tmp:
        home = Path(tmp)
        demo_dir = home / "demo"
        source = [sys.executable, "-m", "histoviewer", "demo", "--dir", str(demo_dir)]
        bundle = [str(args.bundle.resolve() / "histoviewer"), "demo", "--dir", str(demo_dir)]
        source_env = {"PYTHONPATH": str(REPO)}
        # The bundle makes the demo slide (not timed): its phantom writer runs `spawn` worker
        # processes, which in a frozen application re-run the executable.
        if args.demo_slide:
            demo_dir.mkdir()
            shutil.copy(args.demo_slide, demo_dir / "demo-phantom.tiff")
        made_s, _ = run_once(bundle, home, {})
        print(
            f"bundle {'opened' if args.demo_slide else 'made'} the demo slide and painted it in {made_s:.1f} s"
        )
        times: dict[str, list[tuple[float, int]]] = {"source tree": [], "bundle": []}
        for _ in range(args.repeats):
            times["source tree"].append(run_once(source, home, source_env))
            times["bundle"].append(run_once(bundle, home, {}))
        for name, runs in times.items():
            walls = [w for w, _ in runs]
            paints = [p for _, p in runs]
            print(
                f"{name:12s} wall to exit after first paint: median {statistics.median(walls):.2f} s "
                f"(first {walls[0]:.2f} s, all {', '.join(f'{w:.2f}' for w in walls)}); "
                f"window shown -> first frame: median {statistics.median(paints)} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
