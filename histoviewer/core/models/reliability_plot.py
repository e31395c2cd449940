"""Reliability diagram (PNG) with Pillow: per-bin tumour fraction against mean predicted
probability, the diagonal of perfect calibration, bin sizes, ECE and Brier score."""

from __future__ import annotations

import math
from pathlib import Path

from histoviewer.core.models.calibration_metrics import CalibrationMetrics
from histoviewer.core.models.roc_plot import (
    _font,
    label_plot,
    unit_square_plot,
    write_png,
)

__all__ = ["write_reliability_png"]

_SIZE = 640
_MARGIN_L, _MARGIN_R, _MARGIN_T, _MARGIN_B = 70, 20, 60, 60


def write_reliability_png(path: str | Path, cal: CalibrationMetrics, title: str, subtitle: str = "") -> Path:
    """Draw the reliability diagram of ``cal`` and write it atomically as PNG; returns the path."""
    img, d, frame = unit_square_plot()
    x0, y0, x1, y1 = frame.x0, frame.y0, frame.x1, frame.y1
    h = y0 - y1
    to_px = frame.to_px
    small, normal = _font(13), _font(16)
    b = cal.bins
    total = max(int(b.counts.sum()), 1)
    # bin sizes as grey bars along the bottom (square-root scale, up to a fifth of the height)
    biggest = math.sqrt(max(int(b.counts.max()), 1))
    for i, n in enumerate(b.counts.tolist()):
        if n:
            left, _ = to_px(float(b.edges[i]), 0)
            right, _ = to_px(float(b.edges[i + 1]), 0)
            top = y0 - 0.2 * h * math.sqrt(n) / biggest
            d.rectangle([left + 1, top, right - 1, y0], fill=(215, 215, 225))
    d.rectangle([x0, y1, x1, y0], outline="black")
    d.line([to_px(0, 0), to_px(1, 1)], fill=(160, 160, 160), width=1)
    pts = [to_px(float(mp), float(fr)) for mp, fr, n in
           zip(b.mean_probability, b.tumour_fraction, b.counts, strict=True) if n]
    if len(pts) > 1:
        d.line(pts, fill=(30, 90, 200), width=3)
    for (px, py), n in zip(pts, [n for n in b.counts if n], strict=True):
        r = 3 + 5 * math.sqrt(n / total)
        d.ellipse([px - r, py - r, px + r, py + r], fill=(30, 90, 200), outline="white")
    label_plot(img, frame, title, subtitle, "mean predicted tumour probability", "fraction of tumour patches")
    d.text((x0 + 10, y1 + 12), f"ECE {cal.ece:.3f} ({cal.n_bins} bins)", fill=(30, 90, 200), font=normal)
    d.text((x0 + 10, y1 + 34), f"Brier {cal.brier:.3f}", fill="black", font=small)
    d.text((x0 + 10, y1 + 52), f"{total} patches; grey bars: patches per bin", fill="black", font=small)
    return write_png(path, img)
