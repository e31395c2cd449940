"""Legend panel (colour bar, probability scale, model, threshold) and scale bar, with PIL.

No Qt: exports run in the CLI and in worker threads. Sizes are output pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from histoviewer.core.analysis.threshold import describe_threshold
from histoviewer.core.colormaps import colormap_lut
from histoviewer.core.models.domain import DomainVerdict
from histoviewer.core.models.record import ModelRecord
from histoviewer.core.units import UM_PER_MM, um_to_mm

__all__ = ["LegendText", "ScaleBar", "draw_scale_bar", "legend_panel", "legend_text", "scale_bar_for"]

NOT_COMPUTED_RGB = (200, 200, 200)
BACKGROUND_RGB = (255, 255, 255)
FAILED_RGB = (255, 0, 255)
SCREENED_RGB = (190, 210, 240)  # screened negative: not classified by the full model (inference.screening)
_WARN_RGB = (190, 0, 0)
_CAVEAT_RGB = (90, 60, 0)


@dataclass(frozen=True)
class LegendText:
    """The legend's words, before wrapping: ``heading`` (title and model name), ``caution``
    (the model's: a demonstration warning, drawn in red, else what it was trained on),
    ``threshold`` (the colour threshold, its source and, when it is the model's operating
    point, what it achieved on validation), ``settings`` (colour map, opacity) and
    ``operating_point`` (the model's operating point when the colours use another
    threshold, "" otherwise) and ``tissue`` (drawn in red: that the AI result is unreliable on
    a slide whose tissue is unlike the model's training data, "" otherwise)."""

    heading: str
    caution: str
    warning: bool
    threshold: str
    settings: str
    operating_point: str = ""
    tissue: str = ""

    def lines(self) -> tuple[str, ...]:
        """Every text of the legend, in drawing order (unwrapped)."""
        return tuple(t for t in (self.heading, self.tissue, self.caution, self.threshold, self.operating_point,
                                 self.settings) if t)


def legend_text(model: ModelRecord, cmap: str, threshold: float, threshold_source: str = "",
                opacity: float | None = None, title: str = "Tumour probability",
                domain: DomainVerdict | None = None) -> LegendText:
    """What ``legend_panel`` writes (see ``LegendText``). ``threshold_source``: where
    ``threshold`` came from (``analysis/threshold.py``); "" for a display choice such as the
    heatmap alone's 0 (every probability coloured). ``domain``: the slide's tissue check."""
    point = model.operating_point
    caution = f"WARNING: {model.caution}" if model.demonstration else model.caution
    if threshold_source:
        below = describe_threshold(threshold, threshold_source, point)
    else:
        below = f"threshold {threshold:.2f}"
    colours = (f"Coloured from {below}; lower probabilities not coloured" if threshold > 0
               else "Every probability coloured")
    own = ""
    if point is not None and not (threshold_source and abs(point.threshold - threshold) < 5e-4):
        own = f"Model operating point: {point.describe()}"
    settings = f"colour map {cmap}" + ("" if opacity is None else f"; opacity {opacity:.2f}")
    return LegendText(heading=f"{title}, model: {model.display_name}", caution=caution,
                      warning=bool(model.demonstration), threshold=colours, settings=settings,
                      operating_point=own,
                      tissue=f"WARNING: {domain.describe()}" if domain is not None and domain.out_of_domain else "")


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _wrap(text: str, font, width_px: float) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and font.getlength(trial) > width_px:
            lines.append(line)
            line = word
        else:
            line = trial
    if line:
        lines.append(line)
    return lines


def legend_panel(width_px: int, model: ModelRecord, cmap: str, threshold: float,
                 opacity: float | None = None, state_key: bool = False,
                 title: str = "Tumour probability", font_px: int = 14, threshold_source: str = "",
                 domain: DomainVerdict | None = None) -> np.ndarray:
    """A white uint8 RGB panel ``width_px`` wide: title and model name, the model's caution
    (the demonstration warning in red when the model is one, else what it was trained on),
    the colour bar with ticks at 0, 0.25 .. 1, the threshold marked, the threshold's source
    and the model's operating point (``legend_text``), and (``state_key``) the colours of
    cells without a probability. Height follows the text."""
    width_px = max(int(width_px), 320)
    font, small = _font(font_px), _font(max(9, font_px - 3))
    margin = font_px
    text_w = width_px - 2 * margin
    words = legend_text(model, cmap, threshold, threshold_source, opacity, title, domain)
    lines = _wrap(words.heading, font, text_w)
    tissue = _wrap(words.tissue, font, text_w)
    warn = _wrap(words.caution, font, text_w)
    below = [t for part in (words.threshold, words.operating_point, words.settings) if part
             for t in _wrap(part, small, text_w)]
    line_h = int(font_px * 1.35)
    small_h = int(small.size * 1.35) if hasattr(small, "size") else line_h
    bar_h = max(12, font_px)
    key_h = line_h if state_key else 0
    height = (margin + line_h * (len(lines) + len(tissue) + len(warn)) + 6 + bar_h + 4 + line_h + small_h * len(below)
              + key_h + margin)
    img = Image.new("RGB", (width_px, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = margin
    for text in lines:
        draw.text((margin, y), text, fill=(0, 0, 0), font=font)
        y += line_h
    for text in tissue:
        draw.text((margin, y), text, fill=_WARN_RGB, font=font)
        y += line_h
    for text in warn:
        draw.text((margin, y), text, fill=_WARN_RGB if words.warning else _CAVEAT_RGB, font=font)
        y += line_h
    y += 6
    lut = colormap_lut(cmap)
    idx = np.linspace(0, 255, text_w).round().astype(np.intp)
    bar = np.repeat(lut[idx][None], bar_h, axis=0)
    img.paste(Image.fromarray(np.ascontiguousarray(bar)), (margin, y))
    draw.rectangle([margin - 1, y - 1, margin + text_w, y + bar_h], outline=(0, 0, 0))
    if threshold > 0:
        tx = margin + threshold * (text_w - 1)
        # below the threshold nothing is drawn: hatch that part of the bar
        draw.rectangle([margin, y, tx, y + bar_h - 1], fill=(235, 235, 235))
        for hx in range(margin, int(tx), 6):
            draw.line([(hx, y + bar_h - 1), (min(hx + bar_h, tx), y)], fill=(170, 170, 170))
        draw.line([(tx, y - 4), (tx, y + bar_h + 3)], fill=(0, 0, 0), width=2)
    y += bar_h + 4
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        tx = margin + t * (text_w - 1)
        draw.line([(tx, y - 4), (tx, y)], fill=(0, 0, 0))
        draw.text((tx, y), f"{t:g}", fill=(0, 0, 0), font=small, anchor="ma")
    y += line_h
    for text in below:
        draw.text((margin, y), text, fill=(0, 0, 0), font=small)
        y += small_h
    if state_key:
        x = margin
        for rgb, text in ((NOT_COMPUTED_RGB, "not computed"), (SCREENED_RGB, "screened negative"), (FAILED_RGB, "failed"),
                          (BACKGROUND_RGB, "no tissue")):
            draw.rectangle([x, y + 2, x + font_px - 2, y + font_px], fill=rgb, outline=(0, 0, 0))
            draw.text((x + font_px + 4, y), text, fill=(0, 0, 0), font=small)
            x += font_px + 12 + int(small.getlength(text))
    return np.asarray(img)


@dataclass(frozen=True)
class ScaleBar:
    """A scale bar of ``length_um`` drawn ``length_px`` long; ``rect`` is its box (x0, y0,
    x1, y1) in output pixels of the whole image."""

    length_um: float
    length_px: float
    label: str
    rect: tuple[int, int, int, int]
    font_px: int


def _nice_length_um(target_um: float) -> float:
    exp = 10.0 ** np.floor(np.log10(target_um))
    for m in (5.0, 2.0, 1.0):
        if m * exp <= target_um:
            return m * exp
    return exp


def scale_bar_for(output_mpp: float, image_size: tuple[int, int], font_px: int = 14,
                  user_set: bool = False) -> ScaleBar | None:
    """A scale bar about a fifth of the image width (40..400 px), in its bottom-left corner,
    for an image of ``output_mpp`` micrometres per pixel; None when the image is too small
    to hold one. ``user_set``: the slide's scale is the one the user stated (the label says so)."""
    w, h = image_size
    target_px = min(400.0, max(40.0, w / 5))
    if w < 80 or h < 3 * font_px:
        return None
    length_um = _nice_length_um(target_px * output_mpp)
    length_px = length_um / output_mpp
    label = f"{um_to_mm(length_um):g} mm" if length_um >= UM_PER_MM else f"{length_um:g} um"  # the bundled font has no micro sign
    label += " (user-set scale)" if user_set else ""
    pad = max(4, font_px // 2)
    box_w = int(max(length_px, _font(font_px).getlength(label)) + 2 * pad)
    box_h = int(font_px * 1.4 + 6 + 2 * pad)
    x0, y1 = pad, h - pad
    return ScaleBar(length_um, length_px, label, (x0, y1 - box_h, x0 + box_w, y1), font_px)


def draw_scale_bar(draw: ImageDraw.ImageDraw, bar: ScaleBar, tile_offset: tuple[int, int] = (0, 0)) -> None:
    """Draw ``bar`` into a tile that starts at output pixel ``tile_offset``."""
    tx, ty = tile_offset
    x0, y0, x1, y1 = bar.rect
    pad = max(4, bar.font_px // 2)
    draw.rectangle([x0 - tx, y0 - ty, x1 - tx, y1 - ty], fill=(255, 255, 255), outline=(0, 0, 0))
    by = y1 - ty - pad - 6
    draw.rectangle([x0 + pad - tx, by, x0 + pad - tx + round(bar.length_px), by + 5], fill=(0, 0, 0))
    draw.text((x0 + pad - tx, y0 - ty + pad), bar.label, fill=(0, 0, 0), font=_font(bar.font_px))
