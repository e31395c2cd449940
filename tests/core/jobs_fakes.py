"""Per-slide job functions for ``core.jobs.processes`` tests: module level, so a spawned
worker imports them by name. They write into the slide's folder they are given (directly:
the real job writes a temporary folder that becomes it), and return a ``SlideFailure`` whose error is ``DONE`` as their "summary" (cheap, and
it pickles like the real outcomes)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from histoviewer.core.analysis.summary import SlideFailure

DONE = "fake job finished"
HOLD_LIMIT_S = 60.0  # a held slide gives up after this (never reached when the test works)


def fake_slide_job(slide: str, out_dir: str, options) -> SlideFailure:
    """By the slide's name: ``crash`` dies as a native crash would (``os._exit``, after a
    first file); ``hold`` writes ``started`` (its pid) and waits until killed, then would
    write ``complete``; any other slide writes ``complete`` at once."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # atomically: a test that polls for ``started`` reads the pid as soon as the file exists
    tmp = out / f".started.{os.getpid()}"
    tmp.write_text(str(os.getpid()))
    tmp.replace(out / "started")
    name = Path(slide).stem
    if "crash" in name:
        os._exit(3)
    if "hold" in name:
        deadline = time.monotonic() + HOLD_LIMIT_S
        while time.monotonic() < deadline:  # killed by the cancel long before
            time.sleep(0.05)
    (out / "complete").write_text("yes")
    return SlideFailure(slide, DONE)
