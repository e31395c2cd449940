"""ROC curve image (PNG) with Pillow: axes, chance diagonal, curve, AUC and operating point."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from histoviewer.core.atomic import atomic_write_bytes
from histoviewer.core.models.metrics import PatchMetrics, RocCurve

__all__ = ["PlotFrame", "label_plot", "unit_square_plot", "write_png", "write_roc_png"]

_SIZE = 640
_MARGIN_L, _MARGIN_R, _MARGIN_T, _MARGIN_B = 70, 20, 60, 60


@dataclass(frozen=True)
class PlotFrame:
    """The plot area of a unit-square chart in image px: ``(x0, y0)`` is the origin (bottom
    left), ``(x1, y1)`` the top right corner; ``to_px`` maps (x, y) in [0, 1] to image px."""

    x0: float
    y0: float
    x1: float
    y1: float

    def to_px(self, x: float, y: float) -> tuple[float, float]:
        return self.x0 + x * (self.x1 - self.x0), self.y0 - y * (self.y0 - self.y1)


def unit_square_plot() -> tuple[Image.Image, ImageDraw.ImageDraw, PlotFrame]:
    """A white ``_SIZE`` px square image with the grid and 0..1 tick labels of both axes
    drawn (the ROC curve's and the reliability diagram's common frame)."""
    img = Image.new("RGB", (_SIZE, _SIZE), "white")
    d = ImageDraw.Draw(img)
    frame = PlotFrame(_MARGIN_L, _SIZE - _MARGIN_B, _SIZE - _MARGIN_R, _MARGIN_T)
    small = _font(13)
    for t in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        gx, _ = frame.to_px(t, 0)
        _, gy = frame.to_px(0, t)
        d.line([(gx, frame.y1), (gx, frame.y0)], fill=(230, 230, 230))
        d.line([(frame.x0, gy), (frame.x1, gy)], fill=(230, 230, 230))
        d.text((gx, frame.y0 + 6), f"{t:.1f}", fill="black", font=small, anchor="mt")
        d.text((frame.x0 - 6, gy), f"{t:.1f}", fill="black", font=small, anchor="rm")
    return img, d, frame


def label_plot(img: Image.Image, frame: PlotFrame, title: str, subtitle: str, x_label: str,
               y_label: str) -> None:
    """Title, subtitle and both axis titles (the y title rotated) of a unit-square chart."""
    d = ImageDraw.Draw(img)
    normal = _font(16)
    d.text(((frame.x0 + frame.x1) / 2, _SIZE - 20), x_label, fill="black", font=normal, anchor="mm")
    h = int(frame.y0 - frame.y1)
    label = Image.new("RGB", (h, 24), "white")
    ImageDraw.Draw(label).text((h / 2, 12), y_label, fill="black", font=normal, anchor="mm")
    img.paste(label.rotate(90, expand=True), (8, int(frame.y1)))
    d.text((frame.x0, 12), title, fill="black", font=normal)
    if subtitle:
        d.text((frame.x0, 34), subtitle, fill=(90, 90, 90), font=_font(13))


def write_png(path: str | Path, img: Image.Image) -> Path:
    """``img`` as PNG at ``path``, written atomically; returns the path."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = Path(path)
    atomic_write_bytes(out, buf.getvalue())
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def write_roc_png(
    path: str | Path, curve: RocCurve, metrics: PatchMetrics, title: str, subtitle: str = ""
) -> Path:
    """Draw the ROC curve of ``metrics`` and write it atomically as PNG; returns the path."""
    img, d, frame = unit_square_plot()
    x0, y0, x1, y1 = frame.x0, frame.y0, frame.x1, frame.y1
    to_px = frame.to_px
    small, normal = _font(13), _font(16)
    d.rectangle([x0, y1, x1, y0], outline="black")
    d.line([to_px(0, 0), to_px(1, 1)], fill=(160, 160, 160), width=1)
    pts = [to_px(float(f), float(t)) for f, t in zip(curve.fpr, curve.tpr, strict=True)]
    d.line(pts, fill=(200, 30, 30), width=3)
    if metrics.sensitivity is not None and metrics.specificity is not None:
        ox, oy = to_px(1 - metrics.specificity, metrics.sensitivity)
        d.ellipse([ox - 5, oy - 5, ox + 5, oy + 5], outline="black", width=2)
        d.text((ox + 8, oy + 4), f"threshold {metrics.threshold:g}", fill="black", font=small)
    label_plot(img, frame, title, subtitle, "false positive rate (1 - specificity)",
               "true positive rate (sensitivity)")
    auc = "n/a" if metrics.auc is None else f"{metrics.auc:.3f}"
    d.text((x1 - 10, y0 - 30), f"AUC {auc}", fill=(200, 30, 30), font=normal, anchor="rm")
    d.text((x1 - 10, y0 - 12), f"{metrics.positives} tumour / {metrics.negatives} normal",
           fill="black", font=small, anchor="rm")
    return write_png(path, img)
