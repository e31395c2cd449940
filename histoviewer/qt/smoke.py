"""A start-up check for packaged builds: open, paint the first slide, exit.

``HISTOVIEWER_SMOKE_TEST=SECONDS histoviewer view SLIDE`` exits 0 as soon as the first slide
tab has painted a complete frame (every tile of the view drawn) that is not blank, and 1 when
no slide opened, the frame did not complete within SECONDS, or it came out one flat colour
(nothing was drawn). packaging/ uses it to check a bundle on a machine without a display
(``QT_QPA_PLATFORM=offscreen``) and to time the cold start to the first paint.
"""

from __future__ import annotations

import os
import sys
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

__all__ = ["SMOKE_ENV", "arm_smoke_test", "image_is_blank"]

SMOKE_ENV = "HISTOVIEWER_SMOKE_TEST"


def image_is_blank(image) -> bool:
    """True when a QImage is one flat colour (sampled on a 16 x 16 grid)."""
    w, h = image.width(), image.height()
    if w == 0 or h == 0:
        return True
    colours = {
        image.pixel(x * (w - 1) // 15, y * (h - 1) // 15)
        for x in range(16)
        for y in range(16)
    }
    return len(colours) <= 1


def arm_smoke_test(app: QApplication, window) -> None:
    """When ``HISTOVIEWER_SMOKE_TEST`` is set, end the application after the first paint."""
    value = os.environ.get(SMOKE_ENV)
    if not value:
        return
    started = time.perf_counter()
    try:
        timeout_s = float(value)
    except ValueError:
        timeout_s = 60.0

    deadline = QTimer(window)
    deadline.setSingleShot(True)

    def finish(code: int, message: str) -> None:
        deadline.stop()
        print(f"smoke test: {message}", file=sys.stderr, flush=True)
        app.exit(code)

    tabs = window.slide_tabs()
    if not tabs:
        QTimer.singleShot(
            0,
            lambda: finish(
                1, f"no slide opened ({window.last_error or 'no slide given'})"
            ),
        )
        return
    view = tabs[0].view

    def check_frame() -> None:
        if image_is_blank(view.grab().toImage()):
            finish(1, "the first complete frame is blank")
        else:
            finish(
                0,
                f"first complete frame painted after {1000 * (time.perf_counter() - started):.0f} ms "
                "from the window's first show",
            )

    def on_frame() -> None:
        view.frameComplete.disconnect(on_frame)
        QTimer.singleShot(
            0, check_frame
        )  # grab outside paintEvent: grabbing paints again

    view.frameComplete.connect(on_frame)
    deadline.timeout.connect(
        lambda: finish(1, f"no complete frame within {timeout_s:g} s")
    )
    deadline.start(int(timeout_s * 1000))
