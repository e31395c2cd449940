"""Costs behind the summary panel: lesion analysis of a whole-slide live map, how long the GUI
thread stalls while it runs (on the GUI thread vs on LiveLesions' background thread), and
what the lesion layer costs per frame (full repaint vs a pan strip).

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_summary_panel.py

Maps are synthetic, the size of a 100k x 200k px slide at 0.25 um/px under the default CNN
(373 px cells: 268 x 536), half tissue, with 0 / 3 / 10 / 100 lesions of 1-12 cells.
The baseline for the stall is the same analysis run synchronously on the GUI thread, in the
same process and run (the machine is shared: compare the ratio).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from _common import Summary, machine_info, qt_app, table  # noqa: I001 - puts the repo on sys.path

from histoviewer.core.analysis.lesions import LesionParams, MapFrame
from histoviewer.core.analysis.node_label import analyse_map

ROWS, COLS = 268, 536
FRAME = MapFrame(l0_cell=373.0, mpp=0.25, l0_window=124.0)


def make_map(n_lesions: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = np.full((ROWS, COLS), -1.0, np.float32)  # background
    m[20:250, 30:500] = rng.random((230, 470)) * 0.1  # tissue, low P
    for _ in range(n_lesions):
        r, c, s = rng.integers(25, 235), rng.integers(35, 485), rng.integers(1, 13)
        m[r:r + s, c:c + s] = rng.uniform(0.6, 1.0)
    m[100:140, 100:300][rng.random((40, 200)) < 0.5] = np.nan  # not yet classified
    return m


def time_analysis(encoded: np.ndarray, repeats: int) -> tuple[Summary, int]:
    analyse_map(encoded, FRAME, LesionParams())  # warm (imports, caches)
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = len(analyse_map(encoded, FRAME, LesionParams()).lesions)
        times.append(time.perf_counter() - t0)
    return Summary.of_seconds(times), n


def gui_stall(app, encoded: np.ndarray, runs: int, background: bool) -> Summary:
    """Longest gaps between ticks of a 2 ms GUI timer while ``runs`` analyses happen."""
    from PySide6.QtCore import QTimer

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(tick)
    timer.start()
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        for _ in range(runs):
            if background:
                future = executor.submit(analyse_map, encoded, FRAME, LesionParams())
                while not future.done():
                    app.processEvents()
                    time.sleep(0.0005)
            else:
                analyse_map(encoded, FRAME, LesionParams())
            for _ in range(20):  # let the timer tick between runs
                app.processEvents()
                time.sleep(0.002)
    finally:
        timer.stop()
        executor.shutdown()
    # per run, the worst gap is what the user feels
    worst = sorted(gaps, reverse=True)[:runs]
    return Summary.of_seconds(worst)


def layer_paint(n_lesions: int, repeats: int) -> tuple[Summary, Summary]:
    """Paint ms of the lesion layer over a 1400 x 900 view: whole frame vs a 1400 x 40 strip."""
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QImage, QPainter, QRegion

    from histoviewer.core.tiles.viewport import Viewport
    from histoviewer.qt.lesion_layer import LesionLayer

    result = analyse_map(make_map(n_lesions), FRAME, LesionParams())
    layer = LesionLayer()
    layer.set_lesions(result.lesions)
    # the whole slide in view: every lesion is on screen
    vp = Viewport(COLS * 373 / 2, ROWS * 373 / 2, 1400 / (COLS * 373), 1400, 900)
    image = QImage(1400, 900, QImage.Format.Format_ARGB32_Premultiplied)
    out = []
    for region in (QRegion(QRect(0, 0, 1400, 900)), QRegion(QRect(0, 430, 1400, 40))):
        times = []
        for _ in range(repeats):
            image.fill(0)
            painter = QPainter(image)
            t0 = time.perf_counter()
            layer.paint(painter, vp, region)
            painter.end()
            times.append(time.perf_counter() - t0)
        out.append(Summary.of_seconds(times))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    app = qt_app()
    results = {"machine": machine_info(), "analysis": {}, "stall": {}, "paint": {}}
    rows = []
    for n in (0, 3, 10, 100):
        s, found = time_analysis(make_map(n), args.repeats)
        results["analysis"][n] = {"lesions_found": found, **s.to_dict()}
        rows.append((n, found, s.median_ms, s.p95_ms))
    print(table(f"analyse_map on a {ROWS} x {COLS} map", ("lesions placed", "found", "median ms", "p95 ms"), rows))

    rows = []
    for n in (10, 100):
        encoded = make_map(n)
        sync = gui_stall(app, encoded, args.repeats, background=False)
        bg = gui_stall(app, encoded, args.repeats, background=True)
        results["stall"][n] = {"gui_thread": sync.to_dict(), "background": bg.to_dict()}
        rows.append((n, sync.median_ms, bg.median_ms, sync.median_ms / max(bg.median_ms, 1e-6)))
    print(table("Worst GUI event-loop gap per analysis (ms)",
                ("lesions", "on GUI thread (baseline)", "background thread", "ratio"), rows))

    rows = []
    for n in (3, 100):
        full, strip = layer_paint(n, args.repeats * 5)
        results["paint"][n] = {"full": full.to_dict(), "strip": strip.to_dict()}
        rows.append((n, full.median_ms, strip.median_ms, full.median_ms / max(strip.median_ms, 1e-6)))
    print(table("Lesion layer paint, 1400 x 900 view (ms)", ("lesions", "full frame", "pan strip 1400x40", "ratio"), rows))
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
