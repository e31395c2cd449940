"""Helpers shared by the benchmarks: statistics, machine facts, tables, Qt pumping.

Nothing here knows about slides. Times are seconds from ``time.perf_counter`` unless a
name says ``_ms``; memory is MiB (2**20 bytes) unless a name says otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/bench_viewer.py` from anywhere
    sys.path.insert(0, str(REPO))

MIB = 1024 * 1024


# -- statistics ------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), the same rule as numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclasses.dataclass(frozen=True)
class Summary:
    """Distribution of a list of durations, in milliseconds."""

    n: int
    median_ms: float
    p95_ms: float
    max_ms: float
    min_ms: float

    @classmethod
    def of_seconds(cls, seconds: Sequence[float]) -> "Summary":
        ms = [s * 1e3 for s in seconds]
        if not ms:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(len(ms), statistics.median(ms), percentile(ms, 95), max(ms), min(ms))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def slope_per_minute(times_s: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against time, per minute (nan with < 2 points)."""
    n = len(times_s)
    if n < 2:
        return math.nan
    mt, mv = sum(times_s) / n, sum(values) / n
    var = sum((t - mt) ** 2 for t in times_s)
    if var == 0:
        return math.nan
    return 60.0 * sum((t - mt) * (v - mv) for t, v in zip(times_s, values)) / var


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MIB


# -- the machine ------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """What a reader needs to compare numbers: cores, CPU, RAM and library versions."""
    import numpy
    import openslide
    import psutil
    import PySide6

    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "pyside6": PySide6.__version__,
        "openslide_python": openslide.__version__,
        "openslide_lib": openslide.__library_version__,
        "numpy": numpy.__version__,
        "qt_platform": os.environ.get("QT_QPA_PLATFORM", "(default)"),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }


def code_fingerprint() -> dict[str, str]:
    """Short hashes of the viewer sources measured: the code changes under the benchmark."""
    import hashlib

    files = sorted((REPO / "histoviewer" / "qt").glob("*.py")) + sorted((REPO / "histoviewer" / "core" / "tiles").glob("*.py"))
    files += sorted((REPO / "histoviewer" / "core" / "slide").glob("*.py"))
    return {str(f.relative_to(REPO)): hashlib.sha256(f.read_bytes()).hexdigest()[:12] for f in files}


# -- output ------------------------------------------------------------------------------------
def fmt(value: object, digits: int = 1) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table that also reads as GitHub Markdown."""
    cells = [[str(h) for h in header]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([f"### {title}", "", line(cells[0]), sep, *(line(r) for r in cells[1:]), ""])


# -- Qt -------------------------------------------------------------------------------------------
def qt_app():
    """The QApplication, created on the offscreen platform unless the caller chose another."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication(["histoviewer-bench"])


def pump_until(app, done: Callable[[], bool], timeout_s: float, nap_s: float = 0.0005) -> bool:
    """Process Qt events until ``done()``; naps at most ``nap_s`` (< 1 ms) between rounds.

    Returns False on timeout. The naps let the loader threads run on a 2-core machine
    instead of the GUI thread spinning on the GIL.
    """
    deadline = time.perf_counter() + timeout_s
    while not done():
        app.processEvents()
        if done():
            return True
        if time.perf_counter() > deadline:
            return False
        time.sleep(nap_s)
    return True


def pump_for(app, seconds: float, nap_s: float = 0.0005) -> None:
    """Process events for ``seconds`` (frame pacing in scripted pans)."""
    end = time.perf_counter() + seconds
    while True:
        app.processEvents()
        if time.perf_counter() >= end:
            return
        time.sleep(min(nap_s, max(0.0, end - time.perf_counter())))


# -- a slide tab as the application shows it ----------------------------------------------------
VIEW_W, VIEW_H = 1920, 1080


def open_tab(path: Path, cache, size: tuple[int, int] = (VIEW_W, VIEW_H)):
    """A shown ``SlideTab`` of ``size`` screen pixels (its view fills it), fitted to window.

    Nothing is painted yet: the first paint happens when events are next processed.
    """
    from histoviewer.qt.slide_tab import SlideTab

    tab = SlideTab(path, cache)
    tab.resize(*size)
    tab.show()
    return tab


def close_tab(app, tab) -> None:
    """Stop the tab's loader threads and delete its widgets now (not at the next event loop)."""
    from PySide6.QtCore import QEvent

    tab.close_slide()
    tab.hide()
    tab.deleteLater()
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
