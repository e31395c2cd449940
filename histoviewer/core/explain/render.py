"""Pictures of explanations (numpy / Pillow, no Qt): a Grad-CAM overlay on its patch, the
handcrafted model's terms as bars, and a confusion matrix beside the ROC and calibration plots.
The viewer's patch inspector and the ``top losses`` gallery draw the same pictures."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from histoviewer.core.colormaps import apply_colormap
from histoviewer.core.explain.contributions import PatchContributions

if (
    TYPE_CHECKING
):  # models.metrics imports scikit-learn: the viewer draws these pictures without it
    from histoviewer.core.models.metrics import PatchMetrics

__all__ = [
    "CAM_COLORMAP",
    "cam_overlay",
    "confusion_matrix_image",
    "contribution_bars_image",
]

CAM_COLORMAP = "turbo"  # blue (no evidence) .. red (strongest tumour evidence), as Grad-CAM papers show it
CAM_MAX_ALPHA = 0.6  # the strongest evidence still lets the tissue show through
TUMOUR_RGB = (200, 40, 40)
NORMAL_RGB = (40, 90, 200)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def cam_overlay(patch: np.ndarray, cam: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """``(P, P, 3)`` uint8: ``patch`` with the Grad-CAM map ``cam`` (``(P, P)``, 0..1) blended
    in, opaque where the evidence is strongest and clear where there is none. A map with no
    evidence at all (``peak == 0``) leaves the patch as it is."""
    rgb = np.asarray(patch, np.float32)
    if not peak > 0:
        return np.asarray(patch, np.uint8).copy()
    heat = apply_colormap(cam, CAM_COLORMAP).astype(np.float32)
    alpha = (CAM_MAX_ALPHA * np.clip(cam, 0, 1))[..., None]
    return np.clip(rgb * (1 - alpha) + heat * alpha + 0.5, 0, 255).astype(np.uint8)


def contribution_bars_image(
    c: PatchContributions, width: int = 600, top_features: int = 6
) -> Image.Image:
    """Horizontal bars of the feature groups' terms (towards tumour red, right; towards normal
    blue, left) and the ``top_features`` largest single features, with the sum and P."""
    groups = c.groups()
    feats = c.top(top_features)
    row, head = 20, 44
    height = head + row * (len(groups) + len(feats) + 2) + 30
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    small, normal = _font(12), _font(14)
    d.text(
        (8, 6),
        f"P(tumour) {c.probability:.2f} = sigmoid of {c.logit:+.2f} {c.units}",
        fill="black",
        font=normal,
    )
    d.text(
        (8, 24),
        f"intercept {c.intercept:+.2f}; bars: each group's share (red: towards tumour)",
        fill=(90, 90, 90),
        font=small,
    )
    label_w = int(width * 0.5)
    mid = label_w + (width - label_w) // 2
    half = (width - label_w) // 2 - 44  # room for the number at the bar's end
    biggest = max([abs(v) for _, v in groups] + [abs(f[3]) for f in feats] + [1e-9])

    def fit(text: str, room: float) -> str:
        # cut to the label column: a long description must not run under the bars' numbers
        if d.textlength(text, font=small) <= room:
            return text
        while text and d.textlength(text + "...", font=small) > room:
            text = text[:-1]
        return text.rstrip() + "..."

    def bar(y: int, text: str, value: float) -> None:
        d.text(
            (8, y + row // 2),
            fit(text, label_w - 14),
            fill="black",
            font=small,
            anchor="lm",
        )
        n = round(half * abs(value) / biggest)
        colour = TUMOUR_RGB if value > 0 else NORMAL_RGB
        x0, x1 = (mid, mid + n) if value > 0 else (mid - n, mid)
        d.rectangle([x0, y + 4, x1, y + row - 4], fill=colour)
        d.text(
            (x1 + 4, y + row // 2) if value > 0 else (x0 - 4, y + row // 2),
            f"{value:+.2f}",
            fill=(60, 60, 60),
            font=small,
            anchor="lm" if value > 0 else "rm",
        )

    y = head
    for name, value in groups:
        bar(y, name, value)
        y += row
    y += row // 2
    d.text(
        (8, y + row // 2),
        "largest single features:",
        fill=(90, 90, 90),
        font=small,
        anchor="lm",
    )
    y += row
    for _name, description, z, value in feats:
        bar(y, f"(z {z:+.1f}) {description}", value)
        y += row
    d.line([(mid, head - 2), (mid, y)], fill=(120, 120, 120))
    return img


def confusion_matrix_image(
    m: PatchMetrics, title: str, subtitle: str = "", size: int = 640
) -> Image.Image:
    """The 2 x 2 confusion matrix at ``m.threshold`` as a ``size`` px square picture (rows: true
    class, columns: predicted), cells shaded by their share of their true class."""
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    normal, big, small = _font(16), _font(28), _font(13)
    d.text((70, 12), title, fill="black", font=normal)
    if subtitle:
        d.text((70, 34), subtitle, fill=(90, 90, 90), font=small)
    x0, y0, cell = 170, 130, (size - 210) // 2
    counts = ((m.tn, m.fp), (m.fn, m.tp))
    names = ("normal", "tumour")
    for r in range(2):
        total = max(1, counts[r][0] + counts[r][1])
        for col in range(2):
            share = counts[r][col] / total
            correct = r == col
            base = np.array((60, 150, 80) if correct else (200, 60, 60), np.float32)
            shade = tuple(int(v) for v in (255 - (255 - base) * share))
            box = [
                x0 + col * cell,
                y0 + r * cell,
                x0 + (col + 1) * cell,
                y0 + (r + 1) * cell,
            ]
            d.rectangle(box, fill=shade, outline="black")
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            ink = "white" if share > 0.55 else "black"
            d.text((cx, cy - 12), f"{counts[r][col]}", fill=ink, font=big, anchor="mm")
            d.text(
                (cx, cy + 20),
                f"{100 * share:.1f} % of true {names[r]}",
                fill=ink,
                font=small,
                anchor="mm",
            )
        d.text(
            (x0 - 10, y0 + r * cell + cell / 2),
            f"true {names[r]}",
            fill="black",
            font=normal,
            anchor="rm",
        )
    for col in range(2):
        d.text(
            (x0 + col * cell + cell / 2, y0 - 14),
            f"predicted {names[col]}",
            fill="black",
            font=normal,
            anchor="mm",
        )
    d.text(
        (size / 2, size - 24),
        f"threshold {m.threshold:g}: {m.n} patches ({m.positives} tumour, "
        f"{m.negatives} normal)",
        fill="black",
        font=small,
        anchor="mm",
    )
    return img
